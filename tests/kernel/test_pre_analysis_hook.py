"""The model's exposure pre-analysis hook (``exposure_pre_analysis_module``), on PiWind's 10 locations.

Hooks here are real modules written to a temporary folder, built and run as the reference
builds and runs them (``cls(exposure_data=OedExposure, exposure_pre_analysis_setting=dict,
...).run()``), through ``generate_files`` and through the file step the platform runs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from perilflow.kernel.inputs.generate import generate_files
from perilflow.kernel.inputs.hook import apply_pre_analysis_hook, run_pre_analysis_hook_files
from perilflow.kernel.mdk import load_mdk_config
from perilflow.kernel.oed import load_exposure
from tests.conftest import require_shared

#: Multiplies BuildingTIV by the setting "factor" (default 2), the way a model's hook edits a frame in place.
SCALING_HOOK = '''
class ExposurePreAnalysis:
    def __init__(self, exposure_data, exposure_pre_analysis_setting, **kwargs):
        self.exposure_data = exposure_data
        self.settings = exposure_pre_analysis_setting
        self.kwargs = kwargs

    def run(self):
        location = self.exposure_data.location.dataframe
        location["BuildingTIV"] = location["BuildingTIV"] * self.settings.get("factor", 2)
        return sorted(self.kwargs)
'''

#: Drops the locations listed in the setting "drop" (LocNumber), replacing the frame; no **kwargs.
DROPPING_HOOK = '''
class DropLocations:
    def __init__(self, exposure_data, exposure_pre_analysis_setting=None):
        self.exposure_data = exposure_data
        self.drop = set((exposure_pre_analysis_setting or {}).get("drop", []))

    def run(self):
        location = self.exposure_data.location.dataframe
        keep = ~location["LocNumber"].astype(str).isin(self.drop)
        self.exposure_data.location.dataframe = location[keep].reset_index(drop=True)
'''

BROKEN_HOOKS = {
    "raises": '''
class ExposurePreAnalysis:
    def __init__(self, exposure_data, **kwargs):
        self.exposure_data = exposure_data

    def run(self):
        raise KeyError("no column 'Geocoder' in the settings")
''',
    "drops_column": '''
class ExposurePreAnalysis:
    def __init__(self, exposure_data, **kwargs):
        self.exposure_data = exposure_data

    def run(self):
        self.exposure_data.location.dataframe = self.exposure_data.location.dataframe.drop(columns="LocPerilsCovered")
''',
    "syntax": "class ExposurePreAnalysis(:\n    pass\n",
    "no_run": '''
class ExposurePreAnalysis:
    def __init__(self, exposure_data, **kwargs):
        pass
''',
    "drops_location_frame": '''
class ExposurePreAnalysis:
    def __init__(self, exposure_data, **kwargs):
        self.exposure_data = exposure_data

    def run(self):
        self.exposure_data.location.dataframe = None
''',
}


def piwind_config(folder: Path, **hook: object) -> Path:
    """PiWind loc10's MDK config with absolute paths, plus ``hook`` keys, written in ``folder``."""
    piwind = require_shared("piwind")
    config = load_mdk_config(piwind / "oasislmf_loc10.json")
    raw = json.loads((piwind / "oasislmf_loc10.json").read_text())
    for key, value in list(raw.items()):
        if isinstance(value, str) and (piwind / value).exists():
            raw[key] = str((piwind / value).resolve())
    raw.update(hook)
    assert config.location is not None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "oasislmf.json"
    path.write_text(json.dumps(raw, indent=2))
    return path


def write_hook(folder: Path, source: str, name: str = "hook.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def summary(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "gul_summary_map.csv")


@pytest.mark.reference
def test_no_hook_is_a_no_op(tmp_path: Path) -> None:
    config = load_mdk_config(piwind_config(tmp_path))
    assert config.pre_analysis_module is None
    exposure = load_exposure(config.location, config.account)
    assert apply_pre_analysis_hook(exposure, None) is exposure
    files = run_pre_analysis_hook_files(config, output_dir=tmp_path / "out")
    assert files["location"] == config.location and not (tmp_path / "out").exists()


@pytest.mark.reference
def test_hook_doubling_building_tiv_runs_before_the_lookup(tmp_path: Path) -> None:
    write_hook(tmp_path, SCALING_HOOK)
    config = piwind_config(tmp_path, exposure_pre_analysis_module="hook.py")
    generate_files(config, tmp_path / "hooked", file_format="csv")
    generate_files(piwind_config(tmp_path / "plain"), tmp_path / "plain", file_format="csv")

    hooked, plain = summary(tmp_path / "hooked"), summary(tmp_path / "plain")
    assert len(hooked) == len(plain) == len(summary(require_shared("piwind/expected-inputs/loc10")))
    building = plain["coverage_type_id"] == 1  # PiWind's 10 locations insure buildings only
    assert building.any()
    pd.testing.assert_series_equal(hooked["tiv"][building], plain["tiv"][building] * 2)
    pd.testing.assert_series_equal(hooked["tiv"][~building], plain["tiv"][~building])
    hooked_cov, plain_cov = (pd.read_csv(tmp_path / name / "coverages.csv") for name in ("hooked", "plain"))
    pd.testing.assert_series_equal(hooked_cov["tiv"], plain_cov["tiv"] * 2)  # all building coverages


@pytest.mark.reference
def test_hook_settings_class_name_and_dropped_locations(tmp_path: Path) -> None:
    write_hook(tmp_path / "model", DROPPING_HOOK, "drop_locations.py")
    exposure = load_exposure(require_shared("piwind/tests/inputs/SourceLocOEDPiWind10.csv"))
    dropped = [str(exposure.location["LocNumber"].iloc[i]) for i in (0, 4)]
    (tmp_path / "model" / "settings.json").write_text(json.dumps({"drop": dropped}))
    config = piwind_config(tmp_path, exposure_pre_analysis_module="model/drop_locations.py",
                           exposure_pre_analysis_class_name="DropLocations",
                           exposure_pre_analysis_setting_json="model/settings.json")
    generate_files(config, tmp_path / "out", file_format="csv")

    gsm = summary(tmp_path / "out")
    assert set(gsm["LocNumber"].astype(str)).isdisjoint(dropped)
    assert gsm["LocNumber"].nunique() == 8
    assert sorted(gsm["loc_id"].unique()) == list(range(1, 9))  # location ids numbered again, as the reference
    keys = pd.read_csv(tmp_path / "out" / "keys.csv")
    assert sorted(keys["LocID"].unique()) == list(range(1, 9))


@pytest.mark.reference
def test_hook_files_step_writes_the_rewritten_oed(tmp_path: Path) -> None:
    write_hook(tmp_path, SCALING_HOOK)
    (tmp_path / "factor.json").write_text(json.dumps({"factor": 3}))
    config = piwind_config(tmp_path, exposure_pre_analysis_module="hook.py",
                           exposure_pre_analysis_setting_json="factor.json")
    out = tmp_path / "hooked"
    files = run_pre_analysis_hook_files(config, output_dir=out)

    assert files == {kind: out / f"{kind}.csv" for kind in ("location", "account", "ri_info", "ri_scope")}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in files.values())  # no temporary left
    mdk = load_mdk_config(config)
    before = load_exposure(mdk.location, mdk.account, mdk.ri_info, mdk.ri_scope)
    after = load_exposure(files["location"], files["account"], files["ri_info"], files["ri_scope"])
    assert "loc_id" not in pd.read_csv(files["location"]).columns
    pd.testing.assert_series_equal(after.location["BuildingTIV"], before.location["BuildingTIV"] * 3)
    pd.testing.assert_frame_equal(after.location.drop(columns="BuildingTIV"),
                                  before.location.drop(columns="BuildingTIV"))
    for kind in ("account", "ri_info", "ri_scope"):
        pd.testing.assert_frame_equal(getattr(after, kind), getattr(before, kind), obj=kind)

    # as the platform's step calls it: files by kind, the hook and its settings given apart
    again = run_pre_analysis_hook_files({"location": mdk.location, "account": mdk.account},
                                        module=tmp_path / "hook.py", settings={"factor": 0.5},
                                        output_dir=tmp_path / "step")
    assert set(again) == {"location", "account"}
    halved = load_exposure(again["location"], again["account"])
    pd.testing.assert_series_equal(halved.location["BuildingTIV"], before.location["BuildingTIV"] * 0.5)


@pytest.mark.reference
@pytest.mark.parametrize(("hook", "message"), [
    ("missing_file", r"module file .*nowhere\.py not found.*exposure_pre_analysis_module"),
    ("missing_class", r"no class 'Disaggregate' in .*hook\.py \(it defines ExposurePreAnalysis\).*"
                      "exposure_pre_analysis_class_name"),
    ("raises", r"ExposurePreAnalysis \(.*hook\.py\): run\(\) raised KeyError.*Geocoder.*Fix"),
    ("drops_column", r"(?s)ExposurePreAnalysis \(.*hook\.py\) left exposure that is not valid OED:.*location as "
                     r"the pre-analysis hook left it, column 'LocPerilsCovered': required column .* is missing"
                     r".*Fix: the hook must keep the required OED columns"),
    ("syntax", r"importing .*hook\.py failed \(SyntaxError"),
    ("no_run", r"no run\(\) method"),
    ("drops_location_frame", r"removed the location frame"),
    ("missing_settings", r"settings file .*absent\.json not found.*exposure_pre_analysis_setting_json"),
])
def test_hook_errors_name_the_file_class_and_fix(tmp_path: Path, hook: str, message: str) -> None:
    keys = {"exposure_pre_analysis_module": "hook.py"}
    if hook == "missing_file":
        keys["exposure_pre_analysis_module"] = "nowhere.py"
    elif hook == "missing_class":
        write_hook(tmp_path, SCALING_HOOK)
        keys["exposure_pre_analysis_class_name"] = "Disaggregate"
    elif hook == "missing_settings":
        write_hook(tmp_path, SCALING_HOOK)
        keys["exposure_pre_analysis_setting_json"] = "absent.json"
    else:
        write_hook(tmp_path, BROKEN_HOOKS[hook])
    config = piwind_config(tmp_path, **keys)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message) as raised:
        generate_files(config, out, file_format="csv")
    assert not out.exists(), "nothing is written when the hook fails"
    if hook == "missing_class":
        assert "Disaggregate" in str(raised.value)
    with pytest.raises(ValueError, match=message):
        run_pre_analysis_hook_files(config, output_dir=tmp_path / "step")
    assert not any((tmp_path / "step").glob("*.csv"))


#: Records what it was built with in the file named by the setting "record".
RECORDING_HOOK = '''
import json


class ExposurePreAnalysis:
    def __init__(self, exposure_data, exposure_pre_analysis_setting, **kwargs):
        self.exposure_data = exposure_data
        self.settings = exposure_pre_analysis_setting
        self.kwargs = kwargs

    def run(self):
        record = {"type": type(self.exposure_data).__name__, "locations": len(self.exposure_data.location.dataframe),
                  "kwargs": {k: v if isinstance(v, (str, type(None))) else sorted(v) for k, v in self.kwargs.items()}}
        with open(self.settings["record"], "w") as handle:
            json.dump(record, handle)
'''


@pytest.mark.reference
def test_hook_is_built_with_the_reference_arguments(tmp_path: Path) -> None:
    write_hook(tmp_path, RECORDING_HOOK)
    record = tmp_path / "record.json"
    (tmp_path / "settings.json").write_text(json.dumps({"record": str(record)}))
    config = piwind_config(tmp_path, exposure_pre_analysis_module="hook.py",
                           exposure_pre_analysis_setting_json="settings.json")
    run_pre_analysis_hook_files(config, output_dir=tmp_path / "out")
    got = json.loads(record.read_text())
    mdk = load_mdk_config(config)
    assert got["type"] == "OedExposure" and got["locations"] == 10
    assert got["kwargs"] == {"input_dir": str(tmp_path / "out"), "model_data_dir": str(mdk.model_data_dir),
                             "user_data_dir": None, "analysis_settings_json": str(mdk.analysis_settings_json),
                             "settings": sorted(mdk.model_settings())}
