"""The operator and DAG tests' Airflow: the test process's own home (tests/conftest.py), migrated, and storage.

The Airflow home and DB are set by the root conftest (Airflow reads its configuration once, at the
process's first import of it); here the Perilflow settings of the dag.test() runs are added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AIRFLOW_TEST_HOME, require_shared

_HOME = AIRFLOW_TEST_HOME
os.environ.update({
    "PERILFLOW_STORAGE_URL": f"file://{_HOME / 'storage'}",
    "PERILFLOW_RETRY_DELAY": "1",
    # no api-server in dag.test runs: stopping siblings is checked in the integration tier
    "PERILFLOW_API_URL": "http://127.0.0.1:9",
})


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB in this worker's AIRFLOW_HOME."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                       capture_output=True, env=os.environ.copy())
        marker.touch()
    return _HOME


def piwind_model(**extra) -> dict:
    """The run conf's model object for PiWind, paths relative to the shared piwind folder."""
    return {"id": "OasisLMF/PiWind/1", "model_data_dir": "model_data/PiWind",
            "lookup_config_json": "keys_data/PiWind/lookup_config.json", "lookup_data_dir": "keys_data/PiWind",
            "model_settings_json": "meta-data/model_settings.json", "gul_alloc_rule": 1, **extra}


@pytest.fixture
def piwind_conf(monkeypatch) -> dict:
    """A generate_and_run conf for PiWind loc10 with reinsurance and the all-outputs settings."""
    piwind = require_shared("piwind")
    monkeypatch.setenv("PERILFLOW_MODEL_ROOT", str(piwind))
    exposure = piwind / "exposure_data"
    return {
        "analysis_id": 7,
        "model": piwind_model(),
        "portfolio": {"location": str(exposure / "SourceLocOEDPiWind10.csv"),
                      "account": str(exposure / "SourceAccOEDPiWind.csv"),
                      "ri_info": str(exposure / "SourceReinsInfoOEDPiWind.csv"),
                      "ri_scope": str(exposure / "SourceReinsScopeOEDPiWind.csv")},
        "analysis_settings": json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json").read_text()),
    }
