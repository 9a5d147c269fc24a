"""The bundled demo model: reproducible generation, valid model data, a full GUL/IL/RI run with sensible results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.cli import CHUNKS_PER_WORKER
from perilflow.cli import main as cli_main
from perilflow.kernel.demo import CONFIG_FILE, write_demo_model
from perilflow.kernel.demo import __main__ as demo_main
from perilflow.kernel.demo.build import MANIFEST_FILE, analysis_settings, generate
from perilflow.kernel.demo.catalogue import N_EVENTS, N_PERIODS, exceedance_rate
from perilflow.kernel.demo.hazard import GRID, N_LAT, N_LON, areaperil_cells
from perilflow.kernel.demo.portfolio import N_COMMERCIAL, N_RESIDENTIAL
from perilflow.kernel.lookup import run_lookup
from perilflow.kernel.model.data import load_model_data, open_footprint

N_LOCATIONS = N_RESIDENTIAL + N_COMMERCIAL


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A demo model folder, generated once for the module."""
    return write_demo_model(tmp_path_factory.mktemp("demo") / "model").parent


@pytest.fixture(scope="module")
def run_output(demo: Path, tmp_path_factory) -> Path:
    """``perilflow run`` on the demo: the output folder."""
    out = tmp_path_factory.mktemp("run")
    assert cli_main(["run", "--config", str(demo / CONFIG_FILE), "--output-dir", str(out), "--chunks", "2",
                     "--workers", "1"]) == 0
    return out


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- generation


def test_generation_is_byte_identical(demo, tmp_path):
    generate(tmp_path / "again")
    first, second = files_of(demo), files_of(tmp_path / "again")
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different


def test_manifest_lists_every_file(demo):
    manifest = json.loads((demo / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == set(files_of(demo)) - {MANIFEST_FILE}
    for name in ("oasislmf.json", "model_data/footprint.bin", "model_data/footprint.idx",
                 "model_data/vulnerability.bin", "model_data/events_p.bin", "model_data/occurrence_lt.bin",
                 "keys_data/lookup_config.json", "exposure/location.csv", "exposure/ri_scope.csv"):
        assert name in manifest["files"]


def test_second_write_keeps_the_folder_and_a_changed_one_is_replaced(tmp_path):
    config = write_demo_model(tmp_path / "m")
    footprint = tmp_path / "m" / "model_data" / "footprint.bin"
    before = footprint.stat().st_mtime_ns
    assert write_demo_model(tmp_path / "m") == config
    assert footprint.stat().st_mtime_ns == before            # identical: left untouched

    (tmp_path / "m" / "exposure" / "location.csv").write_text("edited\n")
    write_demo_model(tmp_path / "m")
    assert (tmp_path / "m" / "exposure" / "location.csv").read_text().startswith("PortNumber,")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staging left behind


def test_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a Perilflow demo model folder"):
        write_demo_model(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert demo_main.main([str(tmp_path / "mine")]) == 2


def test_module_entry_point_writes_into_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert demo_main.main([str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "empty" / CONFIG_FILE).resolve())


# --------------------------------------------------------------------------- model data


def test_model_data_reads_and_checks(demo):
    settings = json.loads((demo / "meta-data" / "model_settings.json").read_text())
    model = load_model_data(demo / "model_data", model_settings=settings)
    assert model.events.shape == (N_EVENTS,)
    assert sorted(model.events) == list(range(1, N_EVENTS + 1))
    assert model.occurrence.no_of_periods == N_PERIODS and model.occurrence.date_algorithm
    assert list(model.vulnerability.ids) == [1, 2, 3, 4, 5, 6]
    assert model.event_rates is not None
    ids, rates = model.event_rates
    # the catalogue's rates add up to the climatological rate of landfalls of 18-80 m/s ...
    assert rates.sum() == pytest.approx(exceedance_rate(18.0) - exceedance_rate(80.0), rel=1e-5)
    # ... and the simulated years agree with them (Poisson, about 9,000 occurrences)
    occurrences = model.occurrence.records.shape[0]
    assert abs(occurrences - rates.sum() * N_PERIODS) < 4 * np.sqrt(rates.sum() * N_PERIODS)

    footprint = open_footprint(demo / "model_data")
    block = footprint.event_block(footprint.event_ids)          # checks sort order and probability sums
    assert 0.9 * N_EVENTS < len(footprint.event_ids) <= N_EVENTS
    assert set(np.unique(block.areaperil_id)) <= set(range(1, N_LAT * N_LON + 1))
    # mean damage grows with wind for every damage function
    damage = model.damage_bins["interpolation"].astype(np.float64)
    mean = np.einsum("vdi,d->vi", model.vulnerability.array.astype(np.float64), damage)
    assert np.all(np.diff(mean, axis=1) >= -1e-6) and np.all(mean[:, 0] == 0) and np.all(mean[:, -1] > 0.2)


def test_grid_numbering_matches_the_lookup(demo):
    """A location at each cell's centre gets that cell's areaperil from the model's lookup."""
    cells = areaperil_cells()
    locations = pd.DataFrame({"loc_id": np.arange(1, len(cells) + 1), "Latitude": cells["lat"],
                              "Longitude": cells["lon"], "LocPerilsCovered": "WTC", "OccupancyCode": 1051,
                              "ConstructionCode": 5050})
    keys, errors = run_lookup(demo / "keys_data" / "lookup_config.json", locations)
    assert errors.empty
    buildings = keys[keys["coverage_type"] == 1].sort_values("loc_id")
    assert np.array_equal(buildings["area_peril_id"].to_numpy(), cells["areaperil_id"].to_numpy())
    assert len(cells) == N_LAT * N_LON and cells["lat"].between(GRID["lat_min"], GRID["lat_max"]).all()


def test_settings_validate_with_ods_tools(demo):
    from ods_tools.oed.settings import AnalysisSettingHandler, ModelSettingHandler

    ok, errors = ModelSettingHandler.make().validate(json.loads((demo / "meta-data" / "model_settings.json")
                                                                .read_text()), raise_error=False)
    assert ok, errors
    ok, errors = AnalysisSettingHandler.make().validate(analysis_settings(), raise_error=False)
    assert ok, errors


# --------------------------------------------------------------------------- generate-files and a run


def test_generate_files_gives_every_location_its_keys(demo, tmp_path):
    assert cli_main(["generate-files", "--config", str(demo / CONFIG_FILE), "--output-dir", str(tmp_path)]) == 0
    keys = pd.read_csv(tmp_path / "keys.csv")
    errors = pd.read_csv(tmp_path / "keys-errors.csv")
    assert errors.empty
    assert keys["LocID"].nunique() == N_LOCATIONS
    assert sorted(keys.groupby("LocID")["CoverageTypeID"].apply(sorted).apply(tuple).unique()) == [(1, 3)]
    assert set(keys["PerilID"]) == {"WTC"}
    assert keys["AreaPerilID"].between(1, N_LAT * N_LON).all()
    assert set(keys["VulnerabilityID"]) == {1, 2, 3, 4, 5, 6}
    for name in ("items.bin", "coverages.bin", "fm_programme.bin", "fm_profile.bin", "ri_layers.json",
                 "correlations.csv"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "RI_1").is_dir()


def read_ep(out: Path, perspective: str) -> pd.DataFrame:
    """Full-uncertainty OEP and AEP by return period (columns OEP, AEP)."""
    ept = pd.read_csv(out / "output" / f"{perspective}_S1_ept.csv")
    ept = ept[(ept["EPCalc"] == 2) & ept["EPType"].isin([1, 3])]
    table = ept.pivot_table(index="ReturnPeriod", columns="EPType", values="Loss")
    return table.rename(columns={1: "OEP", 3: "AEP"}).sort_index()


def read_aal(out: Path, perspective: str) -> float:
    palt = pd.read_csv(out / "output" / f"{perspective}_S1_palt.csv")
    return float(palt.loc[palt["SampleType"] == 2, "MeanLoss"].iloc[0])


def test_run_gives_alt_ept_and_elt_for_every_perspective(run_output):
    for perspective in ("gul", "il", "ri"):
        for table in ("palt", "ept", "melt", "selt"):
            assert (run_output / "output" / f"{perspective}_S1_{table}.csv").is_file()


def test_run_results_are_sensible(demo, run_output):
    location = pd.read_csv(demo / "exposure" / "location.csv")
    tiv = float((location["BuildingTIV"] + location["ContentsTIV"]).sum())
    aal = {p: read_aal(run_output, p) for p in ("gul", "il", "ri")}
    assert 0 < aal["ri"] < aal["il"] < aal["gul"] < 0.01 * tiv

    ep = {p: read_ep(run_output, p) for p in ("gul", "il", "ri")}
    for p in ("gul", "il", "ri"):
        assert list(ep[p].index) == [2, 5, 10, 25, 50, 100, 200, 250, 500, 1000]
        for column in ("OEP", "AEP"):
            assert np.all(np.diff(ep[p][column].to_numpy()) >= 0), (p, column)    # grows with return period
        assert np.all(ep[p]["AEP"] >= ep[p]["OEP"] - 1e-3 * ep[p]["OEP"].max())
        assert ep[p].loc[100, "OEP"] > 0
    for column in ("OEP", "AEP"):
        tolerance = 1e-6 * ep["gul"][column].max()
        assert np.all(ep["il"][column] <= ep["gul"][column] + tolerance)
        assert np.all(ep["ri"][column] <= ep["il"][column] + tolerance)
    # the 100-year ground-up loss is a few per cent of the portfolio's value
    assert 0.01 * tiv < ep["gul"].loc[100, "OEP"] < 0.2 * tiv
    # the Cat XL cuts the tail: 250-year net loss well below the gross
    assert ep["ri"].loc[250, "OEP"] < 0.6 * ep["il"].loc[250, "OEP"]

    melt = pd.read_csv(run_output / "output" / "gul_S1_melt.csv")
    assert melt["EventRate"].notna().all() and (melt["EventRate"] > 0).all()


def test_the_default_run_in_chunk_processes_equals_one_chunk_in_process(demo, run_output, tmp_path):
    """``perilflow run`` without --chunks: CHUNKS_PER_WORKER chunks per process, each process with its
    share of the threads; the outputs are the bytes of the 2-chunk run and of a 1-chunk run in this process."""
    out = tmp_path / "default"
    assert cli_main(["run", "--config", str(demo / CONFIG_FILE), "--output-dir", str(out), "--workers", "2"]) == 0
    single = tmp_path / "single"
    assert cli_main(["run", "--config", str(demo / CONFIG_FILE), "--output-dir", str(single), "--chunks", "1"]) == 0
    expected = files_of(run_output / "output")
    assert files_of(out / "output") == expected == files_of(single / "output")
    assert len(list((out / "run" / "work").glob("chunk-*"))) == 2 * CHUNKS_PER_WORKER
    assert cli_main(["run", "--config", str(demo / CONFIG_FILE), "--output-dir", str(out), "--chunks", "0"]) == 2


def test_a_chunk_process_loads_the_run_once_for_all_its_chunks(run_output, tmp_path, monkeypatch):
    """The chunk processes of ``perilflow run`` keep the loaded run (model, items, FM plans) between
    chunks, and load another when given another run folder; the chunks' merged outputs are the run's."""
    from perilflow import cli
    from perilflow.kernel import losses

    loads = []

    def counted(run_dir):
        loads.append(str(run_dir))
        return losses._Run(Path(run_dir))

    monkeypatch.setattr(losses, "load_run", counted)
    cli._loaded_run.cache_clear()
    first, second = tmp_path / "first", tmp_path / "second"
    for copy in (first, second):
        shutil.copytree(run_output / "run", copy, ignore=shutil.ignore_patterns("work", "output"))
    for i in range(3):
        assert cli._losses_chunk(first, i, 3, 2**24) == first / "work" / f"chunk-{i}"
    assert loads == [str(first)]
    cli._losses_chunk(second, 0, 1, 2**24)
    assert loads == [str(first), str(second)] and cli._loaded_run.cache_info().currsize == 1
    cli._losses_chunk(second, 0, 1, 2**24)   # the run kept is the last one loaded
    assert loads == [str(first), str(second)]
    cli._loaded_run.cache_clear()
    expected = files_of(run_output / "output")
    assert files_of(losses.generate_losses_output(first, 3)) == expected
    assert files_of(losses.generate_losses_output(second, 1)) == expected


def test_bad_settings_in_the_input_process_are_a_one_line_error(demo, tmp_path, capsys):
    """With chunk processes, ``perilflow run`` makes the inputs and the run folder in a process of its
    own: an error there is still the one-line message naming the field, exit status 2, and the
    settings are checked before any input file is generated."""
    settings = analysis_settings()
    settings["number_of_samples"] = "many"
    bad = tmp_path / "settings.json"
    bad.write_text(json.dumps(settings))
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli_main(["run", "--config", str(demo / CONFIG_FILE), "--analysis-settings", str(bad),
                     "--output-dir", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "number_of_samples" in err[0], err
    assert not (out / "input").exists() and not (out / "output").exists()


def test_freed_memory_goes_back_to_the_system() -> None:
    """With the tuned malloc (freed memory kept for the next block), ``release_free_memory`` returns
    what a process freed: RSS falls by the size of a freed 256 MiB array (in a fresh process)."""
    import subprocess
    import sys

    script = """
import numpy as np
from perilflow.kernel.memory import release_free_memory, tune_process_memory
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) << 10
assert tune_process_memory()
a = np.ones(2**25)   # 256 MiB, from the heap (no mmap with the tuned settings)
del a
kept = rss()
assert release_free_memory()
print(kept - rss())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 200 * 2**20


def test_process_memory_tuning_is_applied_once() -> None:
    import numpy as np

    from perilflow.kernel.memory import tune_process_memory

    assert tune_process_memory() is True and tune_process_memory() is True
    assert np._core.multiarray._get_madvise_hugepage() is False
