"""generate-files: OED exposure + a model's lookup -> the Oasis input files of an analysis.

:func:`write_oasis_files` is the common tail of every input generation (keys in hand:
GUL files, IL files, RI passes); :func:`generate_files` is the reference's ``model
generate-oasis-files`` driven by an MDK configuration file: load and check the OED files,
run the model's keys lookup, then write everything into one folder (with the lookup validation
and summary levels JSON files).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from perilflow.kernel.inputs.exposure_summary import write_exposure_summaries
from perilflow.kernel.inputs.gul import build_gul_inputs, write_gul_inputs
from perilflow.kernel.inputs.il import build_il_inputs, prepare_account, write_il_inputs
from perilflow.kernel.inputs.ri import write_ri_inputs
from perilflow.kernel.mdk import MdkConfig, load_mdk_config
from perilflow.kernel.oed import Exposure, load_exposure

__all__ = ["generate_files", "write_oasis_files"]

#: Oasis files a reader would take in preference to (or together with) the csv files written here
_STALE_FILES = tuple(f"{name}.{ext}" for name in ("items", "coverages", "fm_programme", "fm_policytc", "fm_profile",
                                                  "fm_profile_step", "fm_xref", "correlations")
                     for ext in ("bin", "csv"))


def write_oasis_files(exposure: Exposure, keys: pd.DataFrame, input_dir: str | os.PathLike, *,
                      model_settings: Mapping | None = None, file_format: str = "csv") -> dict[str, Path]:
    """Write the GUL, IL and (when the exposure has reinsurance) RI input files for ``keys``.

    ``file_format`` ("csv" or "bin") is the format of items, coverages and the fm files of
    the insurance pass; summary maps and the RI passes are csv.

    Files of an earlier generation in ``input_dir`` that would be read instead of the new ones
    (``.bin`` twins, old ``RI_n`` folders) are removed first.

    Returns
    -------
    dict of str to pathlib.Path
        Each file or folder written, by name (``items``, ..., ``ri_layers``, ``RI_1``, ...).
    """
    input_dir = Path(input_dir)
    input_dir.mkdir(parents=True, exist_ok=True)
    for name in _STALE_FILES:
        (input_dir / name).unlink(missing_ok=True)
    (input_dir / "ri_layers.json").unlink(missing_ok=True)
    for old in input_dir.glob("RI_*"):
        if old.is_dir():
            shutil.rmtree(old)

    written: dict[str, Path] = {}
    gul = build_gul_inputs(exposure.location, keys, model_settings=model_settings)
    written.update(write_gul_inputs(gul, input_dir, file_format))
    accounts = prepare_account(exposure.account)
    il = build_il_inputs(gul, exposure.location, accounts)
    written.update(write_il_inputs(il, input_dir, file_format))
    if exposure.ri_info is not None and exposure.ri_scope is not None:
        passes = write_ri_inputs(input_dir, exposure.ri_info, exposure.ri_scope, exposure.location, accounts,
                                 il.fm_summary_map)
        written["ri_layers"] = input_dir / "ri_layers.json"
        written.update({f"RI_{p.number}": Path(p.directory) for p in passes})
    return written


def generate_files(config: MdkConfig | str | os.PathLike, output_dir: str | os.PathLike,
                   file_format: str = "bin") -> dict[str, Path]:
    """Generate the Oasis input files described by an MDK configuration file.

    ``file_format`` "bin" (default, as the reference) writes the Oasis binary files, "csv" csv files.

    The exposure comes from ``oed_location_csv`` / ``oed_accounts_csv`` (and the RI files when
    given), the keys from the model's lookup (``lookup_config_json``, data in ``lookup_data_dir``),
    and correlations and damage groups from ``model_settings_json``. When the config names an
    ``exposure_pre_analysis_module``, that hook rewrites the exposure before the lookup
    (:mod:`perilflow.kernel.inputs.hook`). With ``reporting_currency`` (and the rates in
    ``currency_conversion_json``), every amount is first converted to that currency
    (:mod:`perilflow.kernel.oed.currency`), as the reference's input generation does.

    Returns
    -------
    dict of str to pathlib.Path
        ``keys``, ``keys_errors``, every Oasis file written (see :func:`write_oasis_files`), and
        ``exposure_summary_report`` / ``exposure_summary_levels`` (the lookup validation and
        summary levels files, :mod:`perilflow.kernel.inputs.exposure_summary`).
    """
    from perilflow.kernel.lookup import run_lookup, write_keys, write_keys_errors

    if not isinstance(config, MdkConfig):
        config = load_mdk_config(config, require=("location", "account", "lookup_config_json"))
    for attr, key in (("location", "oed_location_csv"), ("account", "oed_accounts_csv"),
                      ("lookup_config_json", "lookup_config_json")):
        if getattr(config, attr) is None:
            raise ValueError(f"{config.source}: '{key}' is required to generate input files; add it")
    out = Path(output_dir)
    sources = {kind: getattr(config, kind) for kind in ("location", "account", "ri_info", "ri_scope")}
    if config.reporting_currency:
        import tempfile

        from perilflow.kernel.oed.currency import convert_exposure_files, load_conversion_file

        conversion = load_conversion_file(config.currency_conversion_json) if config.currency_conversion_json else None
        with tempfile.TemporaryDirectory(prefix="perilflow-currency-") as tmp:
            converted = convert_exposure_files({k: Path(v) for k, v in sources.items() if v is not None},
                                               config.reporting_currency, conversion, Path(tmp))
            exposure = load_exposure(converted["location"], converted.get("account"), converted.get("ri_info"),
                                     converted.get("ri_scope"))
    else:
        exposure = load_exposure(*sources.values())
    if config.pre_analysis_module is not None:
        from perilflow.kernel.inputs.hook import apply_pre_analysis_hook

        exposure = apply_pre_analysis_hook(
            exposure, config.pre_analysis_module, config.pre_analysis_class_name, config.pre_analysis_setting_json,
            input_dir=out, model_data_dir=config.model_data_dir, analysis_settings_json=config.analysis_settings_json,
            model_settings=config.model_settings())
    keys, errors = run_lookup(config.lookup_config_json, exposure.location, config.lookup_data_dir)
    if keys.empty:
        raise ValueError(f"the lookup found no key for any of the {len(exposure.location)} locations "
                         "(see keys-errors.csv); check the exposure's coordinates and perils against the model")
    out.mkdir(parents=True, exist_ok=True)
    written = {"keys": write_keys(out / "keys.csv", keys), "keys_errors": write_keys_errors(out / "keys-errors.csv",
                                                                                            errors)}
    written.update(write_oasis_files(exposure, keys, out, model_settings=config.model_settings(),
                                     file_format=file_format))
    written.update(write_exposure_summaries(out, exposure.location, keys, errors, exposure.account,
                                            reinsurance=exposure.ri_info is not None))
    return written
