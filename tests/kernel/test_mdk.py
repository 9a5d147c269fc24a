"""The MDK configuration file: paths resolve against its folder; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perilflow.kernel.mdk import MdkConfigError, load_mdk_config
from tests.conftest import require_shared


@pytest.mark.reference
def test_piwind_configs_resolve_relative_to_their_folder() -> None:
    piwind = require_shared("piwind")
    for name in ("oasislmf_loc10.json", "oasislmf_loc12598.json", "oasislmf_loc100784.json"):
        config = load_mdk_config(piwind / name)
        assert config.model_data_dir == (piwind / "model_data/PiWind").resolve()
        assert config.location.exists() and config.account.exists()
        assert config.ri_info.exists() and config.ri_scope.exists()
        assert config.gul_alloc_rule == 1 and config.extra["gulmc"] is True
        assert config.model_settings()["model_default_samples"] == 10
        assert "gul_summaries" in config.analysis_settings()


def test_missing_and_bad_entries_are_named(tmp_path: Path) -> None:
    (tmp_path / "loc.csv").write_text("PortNumber,AccNumber,LocNumber\n1,1,1\n")
    (tmp_path / "model").mkdir()
    cfg = tmp_path / "oasislmf.json"

    cfg.write_text(json.dumps({"oed_location_csv": "loc.csv"}))
    with pytest.raises(MdkConfigError, match="'model_data_dir' is required"):
        load_mdk_config(cfg)

    cfg.write_text(json.dumps({"oed_location_csv": "nope.csv", "model_data_dir": "model"}))
    with pytest.raises(MdkConfigError, match="'oed_location_csv' points to .*nope.csv"):
        load_mdk_config(cfg)

    cfg.write_text(json.dumps({"oed_location_csv": "loc.csv", "model_data_dir": "model", "ktools_alloc_rule_gul": 7}))
    with pytest.raises(MdkConfigError, match="ktools_alloc_rule_gul"):
        load_mdk_config(cfg)

    cfg.write_text("{not json")
    with pytest.raises(MdkConfigError, match="not valid JSON"):
        load_mdk_config(cfg)
