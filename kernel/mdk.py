"""The reference's MDK configuration file (``oasislmf.json``), read once and typed.

Model developers already describe a run on one machine with this file, so Perilflow
accepts it wherever a local run is described (``perilflow generate-files``,
``perilflow run``). Paths are resolved against the folder of the file; keys we do not
use are kept in ``extra`` so nothing a user wrote is silently lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MdkConfigError(ValueError):
    """The MDK configuration file is unreadable or names files that do not exist."""


#: key -> attribute for paths (resolved against the config file's folder)
_PATH_KEYS = {
    "model_data_dir": "model_data_dir",
    "lookup_config_json": "lookup_config_json",
    "lookup_data_dir": "lookup_data_dir",
    "model_settings_json": "model_settings_json",
    "analysis_settings_json": "analysis_settings_json",
    "oed_location_csv": "location",
    "oed_accounts_csv": "account",
    "oed_info_csv": "ri_info",
    "oed_scope_csv": "ri_scope",
    "oasis_files_dir": "oasis_files_dir",
    "keys_data_csv": "keys_csv",
    "exposure_pre_analysis_module": "pre_analysis_module",
    "exposure_pre_analysis_setting_json": "pre_analysis_setting_json",
    "currency_conversion_json": "currency_conversion_json",
}
_REQUIRED_EXISTING = ("model_data_dir", "location")


@dataclass
class MdkConfig:
    """What an ``oasislmf.json`` says, with absolute paths."""

    source: Path
    model_data_dir: Path | None = None
    lookup_config_json: Path | None = None
    lookup_data_dir: Path | None = None
    model_settings_json: Path | None = None
    analysis_settings_json: Path | None = None
    location: Path | None = None
    account: Path | None = None
    ri_info: Path | None = None
    ri_scope: Path | None = None
    oasis_files_dir: Path | None = None
    keys_csv: Path | None = None
    pre_analysis_module: Path | None = None
    pre_analysis_class_name: str = "ExposurePreAnalysis"
    pre_analysis_setting_json: Path | None = None
    currency_conversion_json: Path | None = None
    reporting_currency: str | None = None
    gul_alloc_rule: int = 0
    il_alloc_rule: int = 2
    ri_alloc_rule: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def model_settings(self) -> dict[str, Any]:
        """The model settings JSON (empty when the config names none)."""
        return _read_json(self.model_settings_json) if self.model_settings_json else {}

    def analysis_settings(self) -> dict[str, Any]:
        """The analysis settings JSON (empty when the config names none)."""
        return _read_json(self.analysis_settings_json) if self.analysis_settings_json else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MdkConfigError(f"{path}: file not found; check the path in the MDK config") from None
    except json.JSONDecodeError as exc:
        raise MdkConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the syntax") from None


def load_mdk_config(path: str | Path, require: tuple[str, ...] = _REQUIRED_EXISTING) -> MdkConfig:
    """Read an MDK config file; relative paths resolve against its folder.

    ``require`` names attributes (see ``MdkConfig``) that must be set and exist on disk.
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise MdkConfigError(f"{path}: expected a JSON object of settings")
    base = path.resolve().parent
    config = MdkConfig(source=path)
    for key, value in raw.items():
        if key in _PATH_KEYS:
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                raise MdkConfigError(f"{path}: '{key}' must be a path string, got {value!r}")
            setattr(config, _PATH_KEYS[key], (base / value).resolve())
        elif key == "exposure_pre_analysis_class_name":
            if not isinstance(value, str) or not value.isidentifier():
                raise MdkConfigError(f"{path}: '{key}' must be the name of a Python class, got {value!r}")
            config.pre_analysis_class_name = value
        elif key == "reporting_currency":
            if value in (None, ""):
                continue
            from perilflow.kernel.oed.currency import check_reporting_currency

            try:
                config.reporting_currency = check_reporting_currency(value)
            except ValueError as exc:
                raise MdkConfigError(f"{path}: {exc}") from None
        elif key == "ktools_alloc_rule_gul":
            config.gul_alloc_rule = _alloc(path, key, value)
        elif key == "ktools_alloc_rule_il":
            config.il_alloc_rule = _alloc(path, key, value)
        elif key == "ktools_alloc_rule_ri":
            config.ri_alloc_rule = _alloc(path, key, value)
        else:
            config.extra[key] = value
    for attr in require:
        value = getattr(config, attr)
        key = next(k for k, a in _PATH_KEYS.items() if a == attr)
        if value is None:
            raise MdkConfigError(f"{path}: '{key}' is required; add it (a path relative to {base})")
        if not value.exists():
            raise MdkConfigError(f"{path}: '{key}' points to {value}, which does not exist")
    return config


def _alloc(path: Path, key: str, value: Any) -> int:
    if value not in (0, 1, 2, 3):
        raise MdkConfigError(f"{path}: '{key}' must be 0, 1, 2 or 3, got {value!r}")
    return int(value)
