"""The model's exposure pre-analysis hook: model code that rewrites the OED frames before the lookup.

A model names the hook as the reference's MDK configuration does:

``exposure_pre_analysis_module``
    the Python file holding the hook (relative paths resolve against the config's folder);
``exposure_pre_analysis_class_name``
    the class in it (default ``ExposurePreAnalysis``);
``exposure_pre_analysis_setting_json``
    a JSON file of settings handed to the hook (optional).

As in oasislmf, the class is built with keyword arguments -- ``exposure_data`` (an ods-tools
``OedExposure``), ``exposure_pre_analysis_setting`` (the settings dict) and, when known,
``input_dir``, ``model_data_dir``, ``user_data_dir``, ``analysis_settings_json`` and
``settings`` (the model settings) -- and its ``run()`` rewrites the frames in place
(``exposure_data.location.dataframe = ...``: disaggregation, geocoding, cleaning). Only the
arguments its constructor accepts are passed (all of them when it takes ``**kwargs``).

What the hook leaves is checked as an OED file is (:func:`~perilflow.kernel.oed.load_exposure`)
and the internal location ids (``loc_id``) are numbered again, as the reference does after
its hook. With no hook configured nothing happens.

* :func:`apply_pre_analysis_hook`: an :class:`~perilflow.kernel.oed.Exposure` in, the rewritten one out
  (``generate-files`` calls it before the lookup);
* :func:`run_pre_analysis_hook_files`: OED files in, the rewritten OED csv files out (the
  platform's ``pre-analysis-hook`` step).

Every failure (module or class missing, hook raising, hook leaving invalid OED) is a
``ValueError`` naming the file, the class and the fix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from perilflow.kernel.mdk import MdkConfig, load_mdk_config
from perilflow.kernel.oasis.files import atomic_write
from perilflow.kernel.oed import Exposure, load_exposure
from perilflow.kernel.oed.exposure import oed_schema
from perilflow.kernel.oed.validation import raise_for_problems, validate_exposure

__all__ = [
    "DEFAULT_CLASS_NAME",
    "OED_FILE_NAMES",
    "apply_pre_analysis_hook",
    "load_pre_analysis_class",
    "read_hook_settings",
    "run_pre_analysis_hook_files",
]

#: The class a hook module is expected to define when the config names none (as the reference).
DEFAULT_CLASS_NAME = "ExposurePreAnalysis"

#: OED frame -> the csv file :func:`run_pre_analysis_hook_files` writes it to.
OED_FILE_NAMES = {"location": "location.csv", "account": "account.csv", "ri_info": "ri_info.csv",
                  "ri_scope": "ri_scope.csv"}

#: Columns Perilflow adds to the frames; not part of the OED written back.
_INTERNAL_COLUMNS = ("loc_id",)

PathLike = str | os.PathLike


def load_pre_analysis_class(module: PathLike, class_name: str | None = None) -> type:
    """Import the hook file ``module`` and return its class ``class_name`` (default ``ExposurePreAnalysis``).

    The module's folder is on ``sys.path`` while it is imported, so the hook may import its sibling modules.

    Raises
    ------
    ValueError
        If the file does not exist, fails to import, or has no such class.
    """
    class_name = class_name or DEFAULT_CLASS_NAME
    path = Path(module)
    if not path.is_file():
        raise ValueError(f"pre-analysis hook: module file {path} not found. Fix: set exposure_pre_analysis_module "
                         "to the hook's .py file (relative to the MDK config's folder), or remove the key to run "
                         "without a hook.")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"perilflow_pre_analysis_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"pre-analysis hook: {path} is not a Python module. Fix: point "
                         "exposure_pre_analysis_module at a .py file.")
    code = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = code
    try:
        spec.loader.exec_module(code)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ValueError(f"pre-analysis hook: importing {path} failed ({type(exc).__name__}: {exc}). Fix: correct "
                         "the module, or install what it imports in this environment.") from exc
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    cls = getattr(code, class_name, None)
    if not isinstance(cls, type):
        defined = sorted(n for n, v in vars(code).items()
                         if isinstance(v, type) and getattr(v, "__module__", None) == name)
        found = f"it defines {', '.join(defined)}" if defined else "it defines no class"
        raise ValueError(f"pre-analysis hook: no class '{class_name}' in {path} ({found}). Fix: set "
                         "exposure_pre_analysis_class_name to the hook's class name.")
    if not callable(getattr(cls, "run", None)):
        raise ValueError(f"pre-analysis hook: class '{class_name}' in {path} has no run() method. Fix: give it "
                         "a run(self) method that rewrites self.exposure_data's frames.")
    return cls


def read_hook_settings(settings: Mapping[str, Any] | PathLike | None) -> dict[str, Any]:
    """The hook's settings: a mapping as is, a JSON file read, None as ``{}``.

    Raises
    ------
    ValueError
        If the file is missing or is not a JSON object.
    """
    if settings is None:
        return {}
    if isinstance(settings, Mapping):
        return dict(settings)
    path = Path(settings)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"pre-analysis hook: settings file {path} not found. Fix: set "
                         "exposure_pre_analysis_setting_json to an existing JSON file (relative to the MDK "
                         "config's folder), or remove the key.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"pre-analysis hook: settings file {path} is not valid JSON ({exc}). Fix: correct its "
                         "syntax.") from None
    if not isinstance(value, dict):
        raise ValueError(f"pre-analysis hook: settings file {path} holds a {type(value).__name__}, not a JSON "
                         "object. Fix: write the settings as {\"name\": value, ...}.")
    return value


def _constructor_arguments(cls: type, offered: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``offered`` that ``cls(...)`` accepts (all of them when it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return offered
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return offered
    names = {p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                      inspect.Parameter.KEYWORD_ONLY)}
    return {key: value for key, value in offered.items() if key in names}


def _to_ods(exposure: Exposure):
    """The exposure as the ods-tools ``OedExposure`` a hook works on (frames copied, OED names and dtypes)."""
    from ods_tools.oed import OedExposure

    frames = {kind: getattr(exposure, kind) for kind in OED_FILE_NAMES}
    arguments = {kind: frame.copy() for kind, frame in frames.items() if frame is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OedExposure(**arguments, check_oed=False, use_field=True)


def _frames_of(oed, where: str) -> dict[str, pd.DataFrame]:
    """The OED frames the hook left in ``oed``, without Perilflow's internal columns."""
    frames: dict[str, pd.DataFrame] = {}
    for kind in OED_FILE_NAMES:
        source = getattr(oed, kind, None)
        frame = None if source is None else getattr(source, "dataframe", None)
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{where} set exposure_data.{kind}.dataframe to a {type(frame).__name__}. Fix: the "
                             "hook must leave a pandas DataFrame there.")
        frames[kind] = frame.drop(columns=[c for c in _INTERNAL_COLUMNS if c in frame.columns]).reset_index(drop=True)
    if "location" not in frames:
        raise ValueError(f"{where} removed the location frame. Fix: the hook must leave "
                         "exposure_data.location.dataframe (the OED locations) in place.")
    return frames


def apply_pre_analysis_hook(exposure: Exposure, module: PathLike | None, class_name: str | None = None,
                            settings: Mapping[str, Any] | PathLike | None = None, *,
                            allow_duplicate_locations: bool = False, input_dir: PathLike | None = None,
                            model_data_dir: PathLike | None = None, user_data_dir: PathLike | None = None,
                            analysis_settings_json: PathLike | None = None,
                            model_settings: Mapping[str, Any] | None = None) -> Exposure:
    """Run the model's pre-analysis hook on ``exposure`` and return the exposure it leaves.

    Parameters
    ----------
    exposure : Exposure
        The OED exposure as :func:`~perilflow.kernel.oed.load_exposure` returns it. Not modified.
    module : str, os.PathLike or None
        The hook's Python file (``exposure_pre_analysis_module``). None: no hook, ``exposure`` is
        returned as it is.
    class_name : str, optional
        The hook class (``exposure_pre_analysis_class_name``), default ``ExposurePreAnalysis``.
    settings : mapping, str, os.PathLike or None
        The hook's settings, or the JSON file holding them (``exposure_pre_analysis_setting_json``);
        passed as ``exposure_pre_analysis_setting``.
    allow_duplicate_locations : bool, default False
        As in :func:`~perilflow.kernel.oed.load_exposure`, for the checks of what the hook leaves.
    input_dir, model_data_dir, user_data_dir, analysis_settings_json : str or os.PathLike, optional
        Passed to the hook's constructor under these names (as text), as the reference passes them.
    model_settings : mapping, optional
        The model settings, passed to the hook's constructor as ``settings`` (as the reference).

    Returns
    -------
    Exposure
        The rewritten frames, checked as OED files are, with ``loc_id`` numbered again; its
        warnings are those of the input followed by those found in the hook's output.

    Raises
    ------
    ValueError
        If the hook cannot be loaded, raises, or leaves frames that are not valid OED (a missing
        required column, for instance); the message names the file, the class and the fix.
    """
    if module is None or str(module) == "":
        return exposure
    class_name = class_name or DEFAULT_CLASS_NAME
    cls = load_pre_analysis_class(module, class_name)
    where = f"pre-analysis hook {class_name} ({module})"
    paths = {"input_dir": input_dir, "model_data_dir": model_data_dir, "user_data_dir": user_data_dir,
             "analysis_settings_json": analysis_settings_json}
    offered = {"exposure_data": _to_ods(exposure), "exposure_pre_analysis_setting": read_hook_settings(settings),
               **{name: None if value is None else str(value) for name, value in paths.items()},
               "settings": dict(model_settings or {})}
    arguments = _constructor_arguments(cls, offered)
    if "exposure_data" not in arguments:
        raise ValueError(f"{where}: the constructor takes no 'exposure_data' argument. Fix: define "
                         "__init__(self, exposure_data, exposure_pre_analysis_setting=None, **kwargs).")
    try:
        hook = cls(**arguments)
    except Exception as exc:
        raise ValueError(f"{where}: building the hook failed ({type(exc).__name__}: {exc}). Fix: its __init__ "
                         "must accept exposure_data and exposure_pre_analysis_setting as keyword arguments "
                         "(and **kwargs for the rest).") from exc
    try:
        hook.run()
    except Exception as exc:
        raise ValueError(f"{where}: run() raised {type(exc).__name__}: {exc}. Fix: correct the hook, or its "
                         "settings (exposure_pre_analysis_setting_json).") from exc
    frames = _frames_of(arguments["exposure_data"], where)
    try:
        problems = raise_for_problems(validate_exposure(
            {kind: (frame, f"{kind} as the pre-analysis hook left it") for kind, frame in frames.items()},
            oed_schema(), allow_duplicate_locations=allow_duplicate_locations))
        rewritten = load_exposure(frames["location"], frames.get("account"), frames.get("ri_info"),
                                  frames.get("ri_scope"), validate=False)
    except ValueError as exc:
        raise ValueError(f"{where} left exposure that is not valid OED:\n{exc}\nFix: the hook must keep the "
                         "required OED columns and valid values in the frames it rewrites.") from exc
    rewritten.warnings = list(exposure.warnings) + problems
    return rewritten


def run_pre_analysis_hook_files(sources: MdkConfig | PathLike | Mapping[str, PathLike | None], *,
                                output_dir: PathLike, module: PathLike | None = None,
                                class_name: str | None = None, settings: Mapping[str, Any] | PathLike | None = None,
                                allow_duplicate_locations: bool = False, model_data_dir: PathLike | None = None,
                                analysis_settings_json: PathLike | None = None,
                                model_settings: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Load OED files, run the pre-analysis hook and write the OED it leaves as csv files in ``output_dir``.

    Parameters
    ----------
    sources : MdkConfig, str, os.PathLike or mapping
        An MDK configuration (object or ``oasislmf.json`` path: its OED files and its
        ``exposure_pre_analysis_*`` keys), or the OED files by kind (``location``, and
        optionally ``account``, ``ri_info``, ``ri_scope``).
    output_dir : str or os.PathLike
        Where ``location.csv`` (and ``account.csv``, ``ri_info.csv``, ``ri_scope.csv`` when the
        exposure has them) are written, each to a temporary name first, then renamed.
    module, class_name, settings
        The hook (see :func:`apply_pre_analysis_hook`); they override the configuration's.
    allow_duplicate_locations, model_data_dir, analysis_settings_json, model_settings
        As in :func:`apply_pre_analysis_hook` (the configuration's when not given); the hook's
        ``input_dir`` is ``output_dir``.

    Returns
    -------
    dict of str to pathlib.Path
        The OED files by kind: those written, or, when no hook is configured, the input files
        (nothing is written).

    Raises
    ------
    ValueError
        If the OED files are invalid (before or after the hook) or the hook fails.
    """
    if isinstance(sources, (MdkConfig, str, os.PathLike)):
        config = sources if isinstance(sources, MdkConfig) else load_mdk_config(sources, require=("location",))
        if config.location is None:
            raise ValueError(f"{config.source}: 'oed_location_csv' is required to run the pre-analysis hook; add it")
        files = {"location": config.location, "account": config.account, "ri_info": config.ri_info,
                 "ri_scope": config.ri_scope}
        module = module if module is not None else config.pre_analysis_module
        class_name = class_name or config.pre_analysis_class_name
        settings = settings if settings is not None else config.pre_analysis_setting_json
        model_data_dir = model_data_dir if model_data_dir is not None else config.model_data_dir
        if analysis_settings_json is None:
            analysis_settings_json = config.analysis_settings_json
        if model_settings is None and module is not None:
            model_settings = config.model_settings()
    else:
        unknown = sorted(set(sources) - set(OED_FILE_NAMES))
        if unknown:
            raise ValueError(f"pre-analysis hook: unknown OED file kind(s) {unknown}; use {list(OED_FILE_NAMES)}")
        files = dict(sources)
    files = {kind: Path(path) for kind, path in files.items() if path is not None and str(path) != ""}
    if "location" not in files:
        raise ValueError("pre-analysis hook: no location file given. Fix: pass the OED location file.")
    if module is None or str(module) == "":
        return files
    exposure = load_exposure(files["location"], files.get("account"), files.get("ri_info"), files.get("ri_scope"),
                             allow_duplicate_locations=allow_duplicate_locations)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rewritten = apply_pre_analysis_hook(exposure, module, class_name, settings,
                                        allow_duplicate_locations=allow_duplicate_locations, input_dir=out,
                                        model_data_dir=model_data_dir, analysis_settings_json=analysis_settings_json,
                                        model_settings=model_settings)
    written: dict[str, Path] = {}
    for kind, name in OED_FILE_NAMES.items():
        frame = getattr(rewritten, kind)
        if frame is None:
            continue
        frame = frame.drop(columns=[c for c in _INTERNAL_COLUMNS if c in frame.columns])
        written[kind] = atomic_write(out / name, lambda h, f=frame: f.to_csv(h, index=False, lineterminator="\n"),
                                     binary=False)
    return written
