"""Write the demo model, its lookup, settings and portfolio into a folder (:func:`write_demo_model`).

Layout of the folder (paths relative to it, as ``oasislmf.json`` names them)::

    oasislmf.json                MDK configuration tying everything together
    analysis_settings.json       GUL, IL and RI: ALT, EPT (OEP/AEP), ELT for the whole portfolio
    demo_model.json              name, version and SHA-256 of every other file
    meta-data/model_settings.json
    keys_data/lookup_config.json, vulnerability_dict.csv, ModelVersion.csv
    model_data/                  footprint.bin/.idx, vulnerability.bin, damage_bin_dict.bin/.csv,
                                 events_p.bin, occurrence_lt.bin, returnperiods.bin/.csv,
                                 quantile.bin/.csv, event_rates.csv, and for reading only
                                 intensity_bin_dict.csv and event_catalogue.csv
    exposure/                    location.csv, account.csv, ri_info.csv, ri_scope.csv

Everything comes from fixed seeds, so two generations are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.demo import catalogue, hazard, portfolio, vulnerability
from perilflow.kernel.model.dtypes import (
    FOOTPRINT_EVENT_DTYPE,
    FOOTPRINT_HEADER_DTYPE,
    FOOTPRINT_INDEX_DTYPE,
    QUANTILE_DTYPE,
    RETURNPERIODS_DTYPE,
)

__all__ = ["CONFIG_FILE", "DEMO_MODEL_VERSION", "MANIFEST_FILE", "MODEL_ID", "SUPPLIER_ID", "write_demo_model"]

SUPPLIER_ID = "Perilflow"
MODEL_ID = "DemoWind"
#: Bump when anything generated changes.
DEMO_MODEL_VERSION = "1.0.0"
CONFIG_FILE = "oasislmf.json"
MANIFEST_FILE = "demo_model.json"

SEED = 20250601
EVENT_SET = "p"
OCCURRENCE_ID = "lt"
DEFAULT_SAMPLES = 10
ANALYSIS_SAMPLES = 20
RETURN_PERIODS = (1000, 500, 250, 200, 100, 50, 25, 10, 5, 2)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

_FLAG_INTENSITY_UNCERTAINTY = 1
_OCCURRENCE_DATE_ALGORITHM = 1


# --------------------------------------------------------------------------- file writers


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_footprint(folder: Path, rows: np.ndarray, num_intensity_bins: int) -> None:
    """``footprint.bin`` (header, then each event's records) and ``footprint.idx`` (offsets in bytes)."""
    header = np.array([(num_intensity_bins, _FLAG_INTENSITY_UNCERTAINTY)], dtype=FOOTPRINT_HEADER_DTYPE)
    body = np.empty(len(rows), dtype=FOOTPRINT_EVENT_DTYPE)
    for name in FOOTPRINT_EVENT_DTYPE.names:
        body[name] = rows[name]
    event_ids, starts, counts = np.unique(rows["event_id"], return_index=True, return_counts=True)
    index = np.empty(len(event_ids), dtype=FOOTPRINT_INDEX_DTYPE)
    index["event_id"] = event_ids
    index["offset"] = FOOTPRINT_HEADER_DTYPE.itemsize + starts.astype(np.int64) * FOOTPRINT_EVENT_DTYPE.itemsize
    index["size"] = counts.astype(np.int64) * FOOTPRINT_EVENT_DTYPE.itemsize
    _write_bytes(folder / "footprint.bin", header.tobytes() + body.tobytes())
    _write_bytes(folder / "footprint.idx", index.tobytes())


def _write_model_data(folder: Path, events: pd.DataFrame, occurrence: np.ndarray) -> None:
    footprint = hazard.build_footprint(events)
    _write_footprint(folder, footprint, hazard.N_INTENSITY_BINS)
    vuln = vulnerability.build_vulnerability()
    _write_bytes(folder / "vulnerability.bin",
                 np.array([vulnerability.N_DAMAGE_BINS], dtype="<i4").tobytes() + vuln.tobytes())
    bins = vulnerability.damage_bin_dict()
    _write_bytes(folder / "damage_bin_dict.bin", bins.tobytes())
    _write_csv(folder / "damage_bin_dict.csv", pd.DataFrame(bins))
    _write_bytes(folder / f"events_{EVENT_SET}.bin", events["event_id"].to_numpy(dtype="<i4").tobytes())
    header = np.array([_OCCURRENCE_DATE_ALGORITHM, catalogue.N_PERIODS], dtype="<i4")
    _write_bytes(folder / f"occurrence_{OCCURRENCE_ID}.bin", header.tobytes() + occurrence.tobytes())
    periods = np.array(RETURN_PERIODS, dtype=RETURNPERIODS_DTYPE["return_period"])
    _write_bytes(folder / "returnperiods.bin", periods.tobytes())
    _write_csv(folder / "returnperiods.csv", pd.DataFrame({"return_period": periods}))
    _write_bytes(folder / "quantile.bin", np.array(QUANTILES, dtype=QUANTILE_DTYPE["quantile"]).tobytes())
    _write_csv(folder / "quantile.csv", pd.DataFrame({"quantile": np.array(QUANTILES)}))
    rates = pd.DataFrame({"EventIds": events["event_id"], "Event_rates": events["rate"]})
    _write_csv(folder / "event_rates.csv", rates)
    _write_csv(folder / "intensity_bin_dict.csv", hazard.intensity_bin_dict())
    _write_csv(folder / "event_catalogue.csv", events.assign(landfall_lat=hazard.coast_lat(events["landfall_lon"])))


# --------------------------------------------------------------------------- settings


def lookup_config() -> dict[str, Any]:
    """The built-in lookup: perils, areaperil from the grid, building + contents, vulnerability by codes."""
    return {
        "model": {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "model_version": DEMO_MODEL_VERSION},
        "builtin_lookup_type": "new_lookup",
        "keys_data_path": "./",
        "step_definition": {
            "split_loc_perils_covered": {
                "type": "split_loc_perils_covered",
                "columns": ["locperilscovered"],
                "parameters": {"model_perils_covered": ["WTC"]},
            },
            "area_peril": {
                "type": "fixed_size_geo_grid",
                "columns": ["latitude", "longitude"],
                "parameters": dict(hazard.GRID),
            },
            "create_coverage_type": {
                "type": "simple_pivot",
                "parameters": {"pivots": [{"new_cols": {"coverage_type": 1}}, {"new_cols": {"coverage_type": 3}}]},
            },
            "vulnerability": {
                "type": "merge",
                "columns": ["peril_id", "coverage_type", "occupancycode", "constructioncode"],
                "parameters": {"file_path": "%%KEYS_DATA_PATH%%/vulnerability_dict.csv",
                               "id_columns": ["vulnerability_id"]},
            },
        },
        "strategy": ["split_loc_perils_covered", "area_peril", "create_coverage_type", "vulnerability"],
    }


_ORD_METRICS = ["alt_period", "alt_meanonly", "elt_sample", "elt_moment", "elt_quantile", "plt_sample", "plt_moment",
                "plt_quantile", "ept_full_uncertainty_aep", "ept_full_uncertainty_oep", "ept_mean_sample_aep",
                "ept_mean_sample_oep", "ept_per_sample_mean_aep", "ept_per_sample_mean_oep", "psept_aep", "psept_oep"]


def model_settings(n_events: int) -> dict[str, Any]:
    """The model settings file (ods-tools model settings schema)."""
    return {
        "version": "3",
        "name": "Perilflow demo windstorm",
        "description": "Synthetic tropical cyclone model of a stylised coast, generated by code for demonstrations "
                       "and tests; not a model of any real place or risk.",
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_version_id": DEMO_MODEL_VERSION,
        "model_default_samples": DEFAULT_SAMPLES,
        "model_settings": {
            "event_set": {
                "name": "Event set",
                "desc": "Stochastic event set",
                "default": EVENT_SET,
                "options": [{"id": EVENT_SET, "desc": f"Probabilistic: {n_events} synthetic landfalling storms",
                             "number_of_events": n_events, "valid_occurrence_ids": [OCCURRENCE_ID]}],
            },
            "event_occurrence_id": {
                "name": "Occurrence set",
                "desc": "Simulated years",
                "default": OCCURRENCE_ID,
                "options": [{"id": OCCURRENCE_ID, "desc": f"Long term: {catalogue.N_PERIODS:,} years, Poisson "
                             "frequencies", "max_periods": catalogue.N_PERIODS}],
            },
            "valid_output_perspectives": ["gul", "il", "ri"],
            "valid_output_metrics": list(_ORD_METRICS),
            "correlation_settings": [{"peril_correlation_group": 1, "damage_correlation_value": "0.2",
                                      "hazard_correlation_value": "0.0"}],
        },
        "lookup_settings": {
            "supported_perils": [{"id": "WTC", "desc": "Single Peril: Tropical Cyclone", "peril_correlation_group": 1}],
        },
        "data_settings": {
            "damage_group_fields": ["PortNumber", "AccNumber", "LocNumber"],
            "hazard_group_fields": ["PortNumber", "AccNumber", "LocNumber"],
            "countries": ["US"],
            "mandatory_fields": ["Latitude", "Longitude", "OccupancyCode", "ConstructionCode"],
            "model_data_version": DEMO_MODEL_VERSION,
            "keys_data_version": DEMO_MODEL_VERSION,
        },
    }


def analysis_settings(every_output: bool = False) -> dict[str, Any]:
    """GUL, IL and RI for the whole portfolio (summary set 1): ALT, full-uncertainty OEP/AEP, ELT.

    With ``every_output``, every ORD output instead (all of ELT, PLT, ALT with ALCT, EPT and
    PSEPT), as ``perilflow warm-up`` runs it to compile every output kernel.
    """
    if every_output:
        ord_output = dict.fromkeys([*_ORD_METRICS, "alct_convergence", "return_period_file"], True)
    else:
        ord_output = {"alt_period": True, "ept_full_uncertainty_aep": True, "ept_full_uncertainty_oep": True,
                      "elt_moment": True, "elt_sample": True, "return_period_file": True}
    summaries = [{"id": 1, "ord_output": dict(ord_output)}]
    return {
        "version": "3",
        "analysis_tag": "perilflow_demo",
        "source_tag": "perilflow",
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "number_of_samples": ANALYSIS_SAMPLES,
        "gul_threshold": 0,
        "model_settings": {"event_set": EVENT_SET, "event_occurrence_id": OCCURRENCE_ID},
        "gul_output": True,
        "gul_summaries": summaries,
        "il_output": True,
        "il_summaries": [dict(s, ord_output=dict(ord_output)) for s in summaries],
        "ri_output": True,
        "ri_summaries": [dict(s, ord_output=dict(ord_output)) for s in summaries],
    }


def mdk_config() -> dict[str, Any]:
    """``oasislmf.json``: every path relative to the folder."""
    return {
        "model_supplier_id": SUPPLIER_ID,
        "model_name_id": MODEL_ID,
        "model_version_id": DEMO_MODEL_VERSION,
        "model_data_dir": "model_data",
        "lookup_config_json": "keys_data/lookup_config.json",
        "lookup_data_dir": "keys_data",
        "model_settings_json": "meta-data/model_settings.json",
        "oed_location_csv": "exposure/location.csv",
        "oed_accounts_csv": "exposure/account.csv",
        "oed_info_csv": "exposure/ri_info.csv",
        "oed_scope_csv": "exposure/ri_scope.csv",
        "analysis_settings_json": "analysis_settings.json",
        "gulmc": True,
        "ktools_alloc_rule_gul": 1,
    }


# --------------------------------------------------------------------------- the folder


def generate(folder: str | os.PathLike) -> dict[str, Any]:
    """Write every file of the demo into ``folder`` (created; existing files overwritten).

    Returns
    -------
    dict
        The manifest (also written to ``demo_model.json``): name, version, seed and the
        SHA-256 of every file.
    """
    folder = Path(folder)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(3)]
    events = catalogue.build_catalogue(streams[0])
    occurrence = catalogue.build_occurrence(streams[1], events["event_id"].to_numpy(), events["rate"].to_numpy())
    _write_model_data(folder / "model_data", events, occurrence)

    _write_json(folder / "keys_data" / "lookup_config.json", lookup_config())
    _write_csv(folder / "keys_data" / "vulnerability_dict.csv", vulnerability.vulnerability_dict())
    (folder / "keys_data" / "ModelVersion.csv").write_text(f"{SUPPLIER_ID},{MODEL_ID},{DEMO_MODEL_VERSION}\n")
    _write_json(folder / "meta-data" / "model_settings.json", model_settings(len(events)))
    _write_json(folder / "analysis_settings.json", analysis_settings())

    _write_csv(folder / "exposure" / "location.csv", portfolio.build_locations(streams[2]))
    _write_csv(folder / "exposure" / "account.csv", portfolio.build_accounts())
    _write_csv(folder / "exposure" / "ri_info.csv", portfolio.build_ri_info())
    _write_csv(folder / "exposure" / "ri_scope.csv", portfolio.build_ri_scope())
    _write_json(folder / CONFIG_FILE, mdk_config())

    manifest = {"supplier_id": SUPPLIER_ID, "model_id": MODEL_ID, "version": DEMO_MODEL_VERSION, "seed": SEED,
                "files": _digests(folder)}
    _write_json(folder / MANIFEST_FILE, manifest)
    return manifest


def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` but the manifest, by path relative to it (sorted)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST_FILE)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("model_id") == MODEL_ID else None


def write_demo_model(target_dir: str | os.PathLike) -> Path:
    """Generate the demo model, its lookup, settings and portfolio into ``target_dir``.

    The files are written into a temporary sibling folder which then replaces ``target_dir``.
    When ``target_dir`` already holds exactly these files it is left untouched (so a second
    call is cheap and never disturbs a run reading the folder); when it holds an older or
    modified demo it is replaced. A folder that is neither empty nor a demo model is refused.

    Parameters
    ----------
    target_dir : path
        The folder to write (created with its parents when missing).

    Returns
    -------
    pathlib.Path
        The MDK configuration ``<target_dir>/oasislmf.json``.

    Raises
    ------
    ValueError
        If ``target_dir`` is a file, or a non-empty folder that is not a demo model folder.
    """
    target = Path(target_dir).resolve()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; give a folder for the demo model")
    if target.is_dir() and _read_manifest(target) is None and any(target.iterdir()):
        raise ValueError(f"{target} is not empty and is not a Perilflow demo model folder; "
                         "give a new or empty folder (the demo never overwrites other files)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        manifest = generate(staging)
        # looked at only now, so that a folder another process completed meanwhile is kept too
        existing = _read_manifest(target) if target.is_dir() else None
        if existing == manifest and _digests(target) == manifest["files"]:
            shutil.rmtree(staging)
            return target / CONFIG_FILE
        staging.chmod(0o755)  # mkdtemp makes it private
        if existing is not None:
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)  # a missing or empty target is replaced in one step
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / CONFIG_FILE
