"""Model-configured keys lookup: configuration, the built-in lookup, model lookup classes, run_lookup.

A model ships a lookup configuration (JSON), the same file the reference
(oasislmf 2.5 ``KeyServerFactory``) reads:

* Built-in lookup: ``"builtin_lookup_type": "new_lookup"`` with
  ``step_definition`` (named steps: ``type``, ``columns``, ``parameters``)
  and ``strategy`` (the step order); see :mod:`perilflow.kernel.lookup.steps`.
  ``"deterministic"`` selects ``perilflow.kernel.lookup.deterministic.DeterministicLookup``.
* Model lookup class, by one of
  ``lookup_class`` (import path of the class, ``"package.module.Class"``),
  ``lookup_module`` (import path of a module holding ``<model_id>KeysLookup``) or
  ``lookup_module_path`` (a ``.py`` file, relative to the config's folder,
  holding ``<model_id>KeysLookup``); ``model_id`` comes from ``model``.

``keys_data_path`` is taken from the configuration's folder unless the caller
gives one; ``%%KEYS_DATA_PATH%%`` in file parameters is replaced by it.

A lookup class is built as ``cls(config, config_dir=..., user_data_dir=...,
output_dir=...)`` (classes without ``interface_version = "1"`` are built the
older reference way, ``cls(keys_data_directory=..., supplier=...,
model_name=..., model_version=...)``) and its ``process_locations(locations)``
returns a DataFrame (or a list or iterator of dicts) with ``loc_id, peril_id,
coverage_type, area_peril_id, vulnerability_id, status, message`` and
optionally ``amplification_id``.

:func:`run_lookup` runs either kind and splits the result into keys (status
``success``) and errors (every other status).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.lookup.common import (
    ID_COLUMNS,
    STATUS_FAIL,
    STATUS_SUCCESS,
    UNKNOWN_ID,
    LookupConfigError,
    LookupDataError,
    set_id_columns,
)
from perilflow.kernel.lookup.steps import STEP_BUILDERS, BuiltStep, StepContext

__all__ = [
    "ERROR_COLUMNS",
    "KEY_COLUMNS",
    "BasicKeyLookup",
    "BuiltinLookup",
    "LookupConfig",
    "create_lookup",
    "finalise_keys",
    "get_lookup_class",
    "load_lookup_config",
    "run_lookup",
]

#: Columns of the keys frame that :func:`run_lookup` returns (``amplification_id`` added when present).
KEY_COLUMNS = ("loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id")

#: Columns of the errors frame that :func:`run_lookup` returns.
ERROR_COLUMNS = ("loc_id", "peril_id", "coverage_type", "status", "message")

#: Columns a lookup class's ``process_locations`` must return.
RESULT_COLUMNS = ("loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id", "status", "message")

#: Optional result columns the built-in lookup keeps when a step creates them (as the reference).
OPTIONAL_RESULT_COLUMNS = ("amplification_id", "model_data", "section_id", "intensity_adjustment", "return_period")

_DICT_SOURCE = "lookup config (dict)"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class LookupConfig:
    """A lookup configuration with its paths resolved.

    Attributes
    ----------
    data : dict
        The configuration (a private deep copy), with ``keys_data_path`` set
        to the absolute keys data folder as a string.
    source : str
        The configuration file path, or a label for a dict, for messages.
    config_dir : Path
        Folder relative paths are taken from (the file's folder; the current
        directory for a dict).
    keys_data_path : Path
        Absolute keys data folder.
    """

    data: dict[str, Any]
    source: str
    config_dir: Path
    keys_data_path: Path


def load_lookup_config(
    config: Mapping[str, Any] | str | Path, keys_data_path: str | Path | None = None
) -> LookupConfig:
    """Read and resolve a lookup configuration.

    Parameters
    ----------
    config : dict or path
        The configuration, or the path of its JSON file.
    keys_data_path : path, optional
        Keys data folder, overriding the configuration's ``keys_data_path``.

    Returns
    -------
    LookupConfig

    Raises
    ------
    LookupConfigError
        If the file is missing or not a JSON object, or the keys data folder
        does not exist.
    """
    if isinstance(config, str | Path):
        path = Path(config).expanduser().resolve()
        if not path.is_file():
            raise LookupConfigError(
                "lookup configuration file not found",
                source=path,
                fix="give the path of the model's lookup_config.json (keys_data/<model>/lookup_config.json)",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise LookupConfigError(f"not valid JSON ({error})", source=path, fix="correct the JSON syntax") from None
        source, config_dir = str(path), path.parent
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
        source, config_dir = _DICT_SOURCE, Path.cwd()
    else:
        raise LookupConfigError(
            f"the lookup configuration must be a dict or a JSON file path, not {type(config).__name__}",
            fix="pass the parsed lookup_config.json or its path",
        )
    if not isinstance(data, dict):
        raise LookupConfigError("the lookup configuration must be a JSON object", source=source)

    if keys_data_path is not None:
        folder = Path(keys_data_path).expanduser()
        folder = folder if folder.is_absolute() else Path.cwd() / folder
        where = "the keys_data_path argument"
    else:
        configured = data.get("keys_data_path", ".")
        if not isinstance(configured, str | Path):
            raise LookupConfigError(f"keys_data_path must be a folder path, not {configured!r}", source=source)
        folder = Path(configured).expanduser()
        folder = folder if folder.is_absolute() else config_dir / folder
        where = "'keys_data_path' in the configuration (relative to the configuration's folder)"
    folder = folder.resolve()
    if not folder.is_dir():
        raise LookupConfigError(
            f"keys data folder {folder} not found",
            source=source,
            fix=f"check {where}, or pass keys_data_path",
        )
    data["keys_data_path"] = str(folder)
    return LookupConfig(data=data, source=source, config_dir=config_dir, keys_data_path=folder)


# --------------------------------------------------------------------------- lookup classes


class BasicKeyLookup:
    """Base class for model lookup classes (the reference's ``AbstractBasicKeyLookup``).

    Parameters
    ----------
    config : dict
        The lookup configuration; ``config["keys_data_path"]`` is the
        absolute keys data folder.
    config_dir : str or Path, optional
        The configuration's folder.
    user_data_dir, output_dir : str or Path, optional
        Passed through for model code that uses them.
    """

    interface_version = "1"

    def __init__(self, config: dict[str, Any], config_dir: str | Path | None = None,
                 user_data_dir: str | Path | None = None, output_dir: str | Path | None = None) -> None:
        self.config = config
        self.config_dir = Path(config_dir) if config_dir is not None else Path(".")
        self.user_data_dir = user_data_dir
        self.output_dir = output_dir

    def process_locations(self, locations: pd.DataFrame) -> pd.DataFrame | Iterable[Mapping[str, Any]]:
        """Return the keys rows of ``locations`` (see the module docstring for the columns)."""
        raise NotImplementedError


class BuiltinLookup(BasicKeyLookup):
    """The reference's built-in ``Lookup`` (``builtin_lookup_type: new_lookup``).

    The steps of ``strategy`` are built (keys data files read, parameters
    checked) when the object is created.

    Subclasses may add step types by defining ``build_<type>(self, **parameters)``
    returning a step function, as with the reference's ``Lookup``.

    Parameters
    ----------
    config : dict
        The lookup configuration, with ``keys_data_path`` resolved
        (see :func:`load_lookup_config`).
    config_dir : str or Path, optional
        Folder relative file paths are taken from.
    user_data_dir, output_dir : optional
        Unused; accepted for the common constructor.
    source : str, optional
        Where the configuration came from (its file path), for messages.

    Raises
    ------
    LookupConfigError
        If ``step_definition`` or ``strategy`` is missing or wrong, a step
        type is unknown, a parameter is wrong or a keys data file is missing.
    """

    def __init__(self, config: dict[str, Any], config_dir: str | Path | None = None,
                 user_data_dir: str | Path | None = None, output_dir: str | Path | None = None,
                 *, source: str | None = None) -> None:
        super().__init__(config, config_dir, user_data_dir, output_dir)
        self.source = source or "lookup config"
        self.step_definition = self._check_definitions()
        self.strategy = self._check_strategy(self.config.get("strategy"), "strategy")
        self.useful_columns = ["loc_id"]
        for definition in self.step_definition.values():
            for column in definition.get("columns", []):
                if column not in self.useful_columns:
                    self.useful_columns.append(column)
        self._built: dict[str, BuiltStep] = {}
        self._building: list[str] = []
        self.steps = [self._build(name) for name in self.strategy]

    # ----------------------------------------------------------------- checks

    def _check_definitions(self) -> dict[str, dict[str, Any]]:
        definitions = self.config.get("step_definition")
        if not isinstance(definitions, Mapping) or not definitions:
            raise LookupConfigError(
                "no 'step_definition' object",
                source=self.source,
                fix="define the steps as \"step_definition\": {name: {\"type\": ..., \"columns\": [...], "
                "\"parameters\": {...}}}",
            )
        for name, definition in definitions.items():
            if not isinstance(definition, Mapping):
                raise LookupConfigError("the step definition must be an object", source=self.source, step=name)
            if not isinstance(definition.get("type"), str):
                raise LookupConfigError(
                    "no 'type'", source=self.source, step=name,
                    fix=f"set \"type\" to one of {sorted(STEP_BUILDERS)}",
                )
            columns = definition.get("columns", [])
            if isinstance(columns, str) or not isinstance(columns, list) or not all(
                isinstance(c, str) for c in columns
            ):
                raise LookupConfigError(
                    f"'columns' must be a list of column names, not {columns!r}", source=self.source, step=name
                )
            if not isinstance(definition.get("parameters", {}), Mapping):
                raise LookupConfigError("'parameters' must be an object", source=self.source, step=name)
        return {name: dict(definition) for name, definition in definitions.items()}

    def _check_strategy(self, strategy: Any, where: str) -> list[str]:
        if isinstance(strategy, str) or not isinstance(strategy, list) or not strategy:
            raise LookupConfigError(
                f"'{where}' must be a non-empty list of step names",
                source=self.source,
                fix=f"list the steps to run in order, e.g. \"strategy\": {list(self.step_definition)}",
            )
        unknown = [name for name in strategy if name not in self.step_definition]
        if unknown:
            raise LookupConfigError(
                f"'{where}' names step(s) {unknown} that 'step_definition' does not define",
                source=self.source,
                fix=f"use only {sorted(self.step_definition)} or add the missing definitions",
            )
        return list(strategy)

    # ----------------------------------------------------------------- building

    def _build(self, name: str) -> BuiltStep:
        """Build step ``name`` once (recursively for combine), refusing cycles."""
        if name in self._built:
            return self._built[name]
        if name in self._building:
            cycle = " -> ".join([*self._building[self._building.index(name):], name])
            raise LookupConfigError(
                f"cyclic combine strategy: {cycle}", source=self.source, step=name,
                fix="a combine step must not contain itself, directly or through its children",
            )
        if name not in self.step_definition:
            raise LookupConfigError(
                f"step '{name}' is not defined in 'step_definition'", source=self.source, step=self._building[-1],
                fix=f"use only {sorted(self.step_definition)} in the combine 'strategy'",
            )
        definition = self.step_definition[name]
        self._building.append(name)
        try:
            function = self._make_function(name, definition["type"], dict(definition.get("parameters", {})))
        finally:
            self._building.pop()
        built = BuiltStep(name=name, function=function, columns=frozenset(definition.get("columns", [])))
        self._built[name] = built
        return built

    def _make_function(self, name: str, step_type: str, parameters: dict[str, Any]):
        method = getattr(self, f"build_{step_type}", None)
        if method is not None:
            builder, arguments = method, ()
        elif step_type in STEP_BUILDERS:
            context = StepContext(
                step=name,
                source=self.source,
                config_dir=self.config_dir,
                placeholders={str(k).lower(): str(v) for k, v in self.config.items() if isinstance(v, str | Path)},
                build_child=self._build,
            )
            builder, arguments = STEP_BUILDERS[step_type], (context,)
        else:
            raise LookupConfigError(
                f"unknown step type '{step_type}'",
                source=self.source,
                step=name,
                fix=f"use one of {sorted(STEP_BUILDERS)} (other reference step types are not supported yet)",
            )
        try:
            inspect.signature(builder).bind(*arguments, **parameters)
        except TypeError as error:
            raise LookupConfigError(
                f"wrong parameters for step type '{step_type}': {error}",
                source=self.source,
                step=name,
                fix=f"see the parameters of build_{step_type} in perilflow.kernel.lookup.steps",
            ) from None
        return builder(*arguments, **parameters)

    # ----------------------------------------------------------------- running

    def process_locations(self, locations: pd.DataFrame) -> pd.DataFrame:
        """Run the strategy on ``locations``.

        Parameters
        ----------
        locations : pandas.DataFrame
            OED locations with an integer ``loc_id`` column. Columns named in
            any step's ``columns`` are found ignoring case and renamed to the
            configuration's spelling; other columns are dropped, then
            duplicate rows.

        Returns
        -------
        pandas.DataFrame
            ``loc_id, peril_id, coverage_type, area_peril_id, vulnerability_id,
            status, message`` plus the optional columns present
            (``amplification_id``, ...). Ids are ``Int64`` with ``-1`` for
            unknown; a ``success`` row with an unknown id becomes ``fail``
            with message ``"<id column> has an unknown id"``.

        Raises
        ------
        LookupDataError
            If a step's columns are missing.
        LookupConfigError
            If the strategy never creates ``peril_id``, ``area_peril_id`` or
            ``vulnerability_id``.
        """
        by_lower = {str(column).lower(): column for column in locations.columns}
        rename = {by_lower[c.lower()]: c for c in self.useful_columns if c.lower() in by_lower}
        useful = set(self.useful_columns)
        frame = locations[[c for c in locations.columns if rename.get(c, c) in useful]].rename(columns=rename)
        frame = frame[[c for c in self.useful_columns if c in frame.columns]].drop_duplicates()
        frame = frame.reset_index(drop=True)
        frame["status"] = STATUS_SUCCESS
        frame["message"] = ""

        for step in self.steps:
            missing = sorted(step.columns - set(frame.columns))
            if missing:
                raise LookupDataError(
                    f"the locations have no column(s) {missing}, needed by this step",
                    source="location",
                    step=step.name,
                    fix="add them to the OED location file (names are matched ignoring case), "
                    "or run a step that creates them earlier in 'strategy'",
                )
            frame = step.function(frame)

        absent = [column for column in RESULT_COLUMNS if column not in frame.columns]
        if absent:
            raise LookupConfigError(
                f"after the strategy {self.strategy} the rows have no {absent} column",
                source=self.source,
                fix="add the steps that create them (split_loc_perils_covered for peril_id, simple_pivot for "
                "coverage_type, rtree or fixed_size_geo_grid for area_peril_id, merge for vulnerability_id)",
            )
        columns = list(RESULT_COLUMNS) + [c for c in OPTIONAL_RESULT_COLUMNS if c in frame.columns]
        return finalise_keys(frame[columns].reset_index(drop=True))


def finalise_keys(keys: pd.DataFrame) -> pd.DataFrame:
    """Apply the reference's final id rule to lookup results.

    Id columns (``coverage_type``, ``area_peril_id``, ``vulnerability_id``
    and ``amplification_id`` if present) become ``Int64`` with ``-1`` for
    missing or non-positive ids; each ``success`` row with a ``-1`` id gets
    status ``fail`` and message ``"<first such column> has an unknown id"``.

    Parameters
    ----------
    keys : pandas.DataFrame
        Lookup results (modified in place).

    Returns
    -------
    pandas.DataFrame
        ``keys``.
    """
    id_columns = list(ID_COLUMNS) + (["amplification_id"] if "amplification_id" in keys.columns else [])
    set_id_columns(keys, id_columns)
    pending = (keys["status"] == STATUS_SUCCESS).to_numpy(dtype=bool)
    messages = keys["message"].astype(object).to_numpy(copy=True)
    statuses = keys["status"].astype(object).to_numpy(copy=True)
    for column in id_columns:
        unknown = pending & (keys[column] == UNKNOWN_ID).to_numpy(dtype=bool)
        statuses[unknown] = STATUS_FAIL
        messages[unknown] = f"{column} has an unknown id"
        pending &= ~unknown
    keys["status"] = statuses
    keys["message"] = messages
    return keys


def get_lookup_class(config: LookupConfig) -> type:
    """The lookup class a configuration selects.

    Parameters
    ----------
    config : LookupConfig

    Returns
    -------
    type
        A model class (``lookup_class``, ``lookup_module``,
        ``lookup_module_path``), :class:`BuiltinLookup` (``new_lookup``) or the
        deterministic lookup (``deterministic``).

    Raises
    ------
    LookupConfigError
        If the class cannot be imported or the configuration selects none.
    """
    data, source = config.data, config.source
    if data.get("lookup_class"):
        target = data["lookup_class"]
        module_name, _, class_name = str(target).rpartition(".")
        if not module_name:
            raise LookupConfigError(
                f"lookup_class '{target}' is not an import path", source=source,
                fix="give the full path, e.g. \"my_model.lookup.MyModelKeysLookup\"",
            )
        module = _import_module(module_name, "lookup_class", source)
        return _get_class(module, class_name, "lookup_class", source)
    if data.get("lookup_module"):
        module = _import_module(str(data["lookup_module"]), "lookup_module", source)
        return _get_class(module, f"{_model_id(data, source)}KeysLookup", "lookup_module", source)
    if data.get("lookup_module_path"):
        path = Path(str(data["lookup_module_path"])).expanduser()
        path = path if path.is_absolute() else config.config_dir / path
        module = _import_file(path, source)
        return _get_class(module, f"{_model_id(data, source)}KeysLookup", "lookup_module_path", source)
    lookup_type = data.get("builtin_lookup_type")
    if lookup_type == "new_lookup":
        return BuiltinLookup
    if lookup_type == "deterministic":
        try:
            from perilflow.kernel.lookup.deterministic import DeterministicLookup
        except ImportError as error:
            raise LookupConfigError(
                f"the deterministic lookup is not available ({error})", source=source,
                fix="use \"builtin_lookup_type\": \"new_lookup\" or a lookup_class",
            ) from None
        return DeterministicLookup
    raise LookupConfigError(
        f"no lookup selected (builtin_lookup_type is {lookup_type!r})",
        source=source,
        fix="set \"builtin_lookup_type\": \"new_lookup\" (with step_definition and strategy), or name the model's "
        "class with lookup_class, lookup_module or lookup_module_path; lookup configs of oasislmf <= 1.16 are not "
        "supported",
    )


def _model_id(data: Mapping[str, Any], source: str) -> str:
    model = data.get("model")
    if not isinstance(model, Mapping) or not model.get("model_id"):
        raise LookupConfigError(
            "no model.model_id, needed to find the <model_id>KeysLookup class", source=source,
            fix="add \"model\": {\"supplier_id\": ..., \"model_id\": ..., \"model_version\": ...}",
        )
    return str(model["model_id"])


def _import_module(name: str, key: str, source: str):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise LookupConfigError(
            f"{key}: cannot import module '{name}' ({error})", source=source,
            fix="install the model's package in the worker environment or correct the import path",
        ) from None


def _import_file(path: Path, source: str):
    if not path.is_file():
        raise LookupConfigError(
            f"lookup_module_path: file {path} not found", source=source,
            fix="give the .py file path, relative to the lookup configuration's folder",
        )
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"perilflow_model_lookup_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LookupConfigError(f"lookup_module_path: {path} is not a Python module", source=source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    return module


def _get_class(module, class_name: str, key: str, source: str) -> type:
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise LookupConfigError(
            f"{key}: module '{module.__name__}' has no class '{class_name}'", source=source,
            fix="correct the class name (lookup_module and lookup_module_path look for <model_id>KeysLookup)",
        )
    if not callable(getattr(cls, "process_locations", None)):
        raise LookupConfigError(
            f"{key}: class '{class_name}' has no process_locations method", source=source,
            fix="implement process_locations(locations) returning the keys rows",
        )
    return cls


def create_lookup(config: LookupConfig, user_data_dir: str | Path | None = None,
                  output_dir: str | Path | None = None) -> Any:
    """Create the lookup object a configuration selects.

    Parameters
    ----------
    config : LookupConfig
    user_data_dir, output_dir : path, optional
        Passed to the lookup class.

    Returns
    -------
    object
        An object with ``process_locations(locations)``.
    """
    cls = get_lookup_class(config)
    data = copy.deepcopy(config.data)
    if issubclass(cls, BuiltinLookup):
        return cls(data, config_dir=config.config_dir, user_data_dir=user_data_dir, output_dir=output_dir,
                   source=config.source)
    if str(getattr(cls, "interface_version", "0")) == "1":
        return cls(data, config_dir=config.config_dir, user_data_dir=user_data_dir, output_dir=output_dir)
    model = data.get("model") or {}
    return cls(
        keys_data_directory=data["keys_data_path"],
        supplier=model.get("supplier_id"),
        model_name=model.get("model_id"),
        model_version=model.get("model_version"),
    )


# --------------------------------------------------------------------------- run_lookup


def _results_frame(results: Any, owner: str) -> pd.DataFrame:
    """Turn what ``process_locations`` returned into a DataFrame."""
    if isinstance(results, pd.DataFrame):
        return results.reset_index(drop=True)
    if isinstance(results, Mapping):
        raise LookupConfigError(
            f"{owner}.process_locations returned a dict, not rows", fix="return a DataFrame or a list of dicts"
        )
    if isinstance(results, Iterable):
        return pd.DataFrame.from_records(list(results))
    raise LookupConfigError(
        f"{owner}.process_locations returned {type(results).__name__}",
        fix="return a DataFrame, or a list or iterator of dicts",
    )


def run_lookup(
    config: Mapping[str, Any] | str | Path,
    location: pd.DataFrame,
    keys_data_path: str | Path | None = None,
    *,
    user_data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a model's keys lookup on OED locations.

    Parameters
    ----------
    config : dict or path
        Lookup configuration, or its JSON file. Relative paths in it
        (``keys_data_path``, file parameters) are taken from the file's folder,
        or from the current directory for a dict.
    location : pandas.DataFrame
        OED locations (column names as ods-tools gives them) with an integer
        ``loc_id`` column (see :func:`~perilflow.kernel.lookup.location_ids`).
    keys_data_path : path, optional
        Keys data folder, overriding the configuration.
    user_data_dir, output_dir : path, optional
        Passed to model lookup classes.

    Returns
    -------
    keys : pandas.DataFrame
        Rows with status ``success``: ``loc_id, peril_id, coverage_type,
        area_peril_id, vulnerability_id`` (+ ``amplification_id``), ids
        ``int64``.
    errors : pandas.DataFrame
        All other rows: ``loc_id, peril_id, coverage_type, status, message``.

    Both are sorted by ``loc_id, peril_id, coverage_type`` (stable).

    Raises
    ------
    LookupConfigError
        Bad configuration, missing keys data file, or a lookup class returning
        rows without the required columns.
    LookupDataError
        Locations without ``loc_id`` or a column a step needs.
    """
    if not isinstance(location, pd.DataFrame):
        raise LookupDataError(f"location must be a pandas DataFrame, not {type(location).__name__}")
    if "loc_id" not in location.columns:
        raise LookupDataError(
            "the location frame has no 'loc_id' column",
            source="location",
            fix="add it with location['loc_id'] = perilflow.kernel.lookup.location_ids(location)",
        )
    if location["loc_id"].isna().any() or not pd.api.types.is_integer_dtype(location["loc_id"].dtype):
        raise LookupDataError(
            f"column 'loc_id' must hold integers, none missing (dtype {location['loc_id'].dtype})",
            source="location",
            fix="build it with perilflow.kernel.lookup.location_ids(location)",
        )
    resolved = load_lookup_config(config, keys_data_path)
    lookup = create_lookup(resolved, user_data_dir=user_data_dir, output_dir=output_dir)
    owner = type(lookup).__name__
    # the built-in lookup only reads the frame it is given; a model's own class gets a copy to change at will
    given = location if type(lookup) is BuiltinLookup else location.copy()
    results = _results_frame(lookup.process_locations(given), owner)

    required = ("loc_id", "peril_id", "coverage_type", "status")
    missing = [column for column in required if column not in results.columns]
    if missing and not results.empty:
        raise LookupConfigError(
            f"{owner}.process_locations returned rows without column(s) {missing}",
            source=resolved.source,
            fix=f"return the columns {list(RESULT_COLUMNS)} (+ amplification_id)",
        )
    for column in RESULT_COLUMNS:
        if column not in results.columns:
            results[column] = "" if column in ("message", "status") else np.nan
    results["message"] = results["message"].fillna("").astype(str)
    results = finalise_keys(results)
    results["loc_id"] = results["loc_id"].astype("int64")
    results = results.sort_values(["loc_id", "peril_id", "coverage_type"], kind="stable", na_position="last")

    success = (results["status"] == STATUS_SUCCESS).to_numpy(dtype=bool)
    key_columns = list(KEY_COLUMNS) + (["amplification_id"] if "amplification_id" in results.columns else [])
    keys = results.loc[success, key_columns].reset_index(drop=True)
    for column in key_columns[2:]:
        keys[column] = keys[column].astype("int64")
    keys["peril_id"] = keys["peril_id"].astype(str)
    errors = results.loc[~success, list(ERROR_COLUMNS)].reset_index(drop=True)
    errors["status"] = errors["status"].astype(str)
    return keys, errors
