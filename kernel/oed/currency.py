"""Currency conversion of OED exposure to one reporting currency (OasisPlatform's
``currency_conversion_json`` and ``reporting_currency`` of a portfolio; oasislmf's
``--currency-conversion-json`` and ``--reporting-currency``).

A portfolio's locations and accounts may be in several currencies (``LocCurrency``,
``AccCurrency``, ``ReinsCurrency``). Before the Oasis input files are written, every amount
(TIVs, deductibles and limits given as amounts, premiums, layer terms) is converted to the
reporting currency with the rates of exchange given, as the reference does: the conversion is
ods-tools' own (``ods_tools.oed.OedExposure`` with ``currency_conversion`` and
``reporting_currency``), which keeps the original currency in ``OriginalCurrency`` and the rate in
``RateOfExchange``.

The rates are a :data:`DICT_BASED` conversion with its rates inline (``source_type`` ``list``):
:func:`rates_from_csv` builds one from a CSV with the columns ``cur_from,cur_to,roe``, and
:func:`check_conversion` checks one given as JSON. A rate for (A, B) also converts B to A
(by its inverse), as in ods-tools.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DICT_BASED", "check_conversion", "check_reporting_currency", "convert_exposure_files",
           "load_conversion_file", "rates_from_csv"]

DICT_BASED = "DictBasedCurrencyRates"
_CODE = re.compile(r"[A-Z]{3}")
_RATE_COLUMNS = ("cur_from", "cur_to", "roe")
#: the OED file kinds with a currency column, and the column
CURRENCY_COLUMNS = {"location": "LocCurrency", "account": "AccCurrency", "ri_info": "ReinsCurrency"}


def check_reporting_currency(value: Any) -> str:
    """The reporting currency as a three-letter ISO 4217 code, or a ValueError naming the fix."""
    if not isinstance(value, str) or not _CODE.fullmatch(value.strip()):
        raise ValueError(f"reporting_currency {value!r} is not a currency code; give three capital letters "
                         "(ISO 4217), e.g. 'USD'")
    return value.strip()


def _rate_rows(rows: list[Any], where: str) -> list[list[Any]]:
    checked: list[list[Any]] = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise ValueError(f"{where} row {n}: {row!r} is not [cur_from, cur_to, roe]; give three values")
        cur_from, cur_to, roe = row
        for name, code in (("cur_from", cur_from), ("cur_to", cur_to)):
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise ValueError(f"{where} row {n}: {name} {code!r} is not a currency code; give three capital "
                                 "letters (ISO 4217)")
        if isinstance(roe, bool) or not isinstance(roe, int | float) or not math.isfinite(roe) or roe <= 0:
            raise ValueError(f"{where} row {n}: roe {roe!r} is not a rate of exchange; give a finite number > 0")
        if cur_from == cur_to and roe != 1:
            raise ValueError(f"{where} row {n}: a rate from {cur_from} to itself must be 1 (it is {roe})")
        checked.append([cur_from, cur_to, float(roe)])
    pairs = [(f, t) for f, t, _ in checked]
    duplicates = sorted({p for p in pairs if pairs.count(p) > 1})
    if duplicates:
        raise ValueError(f"{where}: pairs given more than once: {duplicates}; give one rate per pair")
    return checked


def rates_from_csv(data: bytes | str | Path) -> dict[str, Any]:
    """A conversion from a CSV of rates (header ``cur_from,cur_to,roe``; one row per currency pair).

    Raises
    ------
    ValueError
        If the CSV is unreadable, lacks a column or has a bad code or rate (row named).
    """
    if isinstance(data, Path):
        data = data.read_bytes()
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"cur_from": str, "cur_to": str}, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"currency rates CSV: unreadable ({exc}); give a CSV with the header cur_from,cur_to,roe"
                         ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in _RATE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"currency rates CSV: missing column(s) {missing}; the header must be cur_from,cur_to,roe")
    if frame.empty:
        raise ValueError("currency rates CSV: no rates; give one row per currency pair")
    roe = pd.to_numeric(frame["roe"], errors="coerce")
    rows = [[f.strip() if isinstance(f, str) else f, t.strip() if isinstance(t, str) else t,
             None if pd.isna(r) else float(r)] for f, t, r in zip(frame["cur_from"], frame["cur_to"], roe, strict=True)]
    return {"currency_conversion_type": DICT_BASED, "source_type": "list",
            "currency_rates": _rate_rows(rows, "currency rates CSV")}


def check_conversion(conversion: Any) -> dict[str, Any]:
    """Check a conversion given as JSON and return it in the form :func:`rates_from_csv` gives.

    Accepted: ``{"currency_conversion_type": "DictBasedCurrencyRates", "source_type": "list",
    "currency_rates": [[cur_from, cur_to, roe], ...]}``. A conversion that reads its rates from a
    file (``source_type`` csv/parquet) or from the internet (``FxCurrencyRates``) is refused: a
    worker has neither the file nor the network.
    """
    if not isinstance(conversion, Mapping):
        raise ValueError("currency conversion: give a JSON object (currency_conversion_type, source_type, "
                         "currency_rates) or upload a CSV of rates (cur_from,cur_to,roe)")
    kind = conversion.get("currency_conversion_type")
    if kind != DICT_BASED:
        raise ValueError(f"currency_conversion_type {kind!r} is not supported; use {DICT_BASED!r} with the rates "
                         "inline (a worker cannot fetch FxCurrencyRates from the internet)")
    source = str(conversion.get("source_type", "")).lower()
    if source != "list":
        raise ValueError(f"source_type {conversion.get('source_type')!r} is not supported; use 'list' with "
                         "currency_rates [[cur_from, cur_to, roe], ...], or upload the rates as a CSV")
    rates = conversion.get("currency_rates")
    if not isinstance(rates, list) or not rates:
        raise ValueError("currency_rates: give a non-empty list of [cur_from, cur_to, roe]")
    unknown = sorted(set(conversion) - {"currency_conversion_type", "source_type", "currency_rates"})
    if unknown:
        raise ValueError(f"currency conversion: unknown key(s) {unknown}; remove them")
    return {"currency_conversion_type": DICT_BASED, "source_type": "list",
            "currency_rates": _rate_rows(rates, "currency_rates")}


def load_conversion_file(path: str | Path) -> dict[str, Any]:
    """A conversion from an oasislmf ``currency_conversion_json`` file, with its rates inline.

    Besides the inline form :func:`check_conversion` takes, the file may name a CSV or parquet
    file of rates (``source_type`` csv/parquet, ``file_path`` relative to the JSON file's folder),
    which is read here, or be a CSV of rates itself.
    """
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the currency conversion ({exc}); check the path") from None
    if path.suffix.lower() == ".csv":
        return rates_from_csv(text)
    try:
        conversion = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the syntax") from None
    source = str(conversion.get("source_type", "")).lower() if isinstance(conversion, dict) else ""
    if source in ("csv", "parquet") and conversion.get("currency_conversion_type") == DICT_BASED:
        rates = path.parent / str(conversion.get("file_path", ""))
        if not rates.is_file():
            raise ValueError(f"{path}: file_path {conversion.get('file_path')!r} is not a file next to it; fix the "
                             "path (relative to the JSON file's folder)")
        if source == "csv":
            return rates_from_csv(rates)
        frame = pd.read_parquet(rates)
        return check_conversion({"currency_conversion_type": DICT_BASED, "source_type": "list",
                                 "currency_rates": frame[list(_RATE_COLUMNS)].values.tolist()})
    try:
        return check_conversion(conversion)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _missing_pairs(frames: Mapping[str, pd.DataFrame], reporting: str, conversion: Mapping[str, Any] | None
                   ) -> list[tuple[str, str, str]]:
    """(file kind, currency, reporting currency) for every currency the rates cannot convert."""
    pairs = {(f, t) for f, t, _ in (conversion or {}).get("currency_rates", [])}
    missing = []
    for kind, column in CURRENCY_COLUMNS.items():
        frame = frames.get(kind)
        if frame is None or column not in frame.columns:
            continue
        for code in sorted(str(c) for c in frame[column].dropna().unique()):
            if code != reporting and (code, reporting) not in pairs and (reporting, code) not in pairs:
                missing.append((kind, code, reporting))
    return missing


def convert_exposure_files(sources: Mapping[str, Path], reporting_currency: str,
                           conversion: Mapping[str, Any] | None, output_dir: Path) -> dict[str, Path]:
    """Write the OED files of ``sources`` (kind -> path) converted to ``reporting_currency``.

    Each file is written to ``output_dir`` under its own name and in its own format (csv or
    parquet); a file without amounts in a currency (``ri_scope``) comes out with the same values.

    Raises
    ------
    ValueError
        If a file holds a currency that the rates do not convert to the reporting currency
        (every such currency is named), or if ods-tools cannot load a file.
    """
    from ods_tools.oed import OedExposure

    reporting = check_reporting_currency(reporting_currency)
    checked = check_conversion(conversion) if conversion else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # each file is read once: loaded as it is, checked for missing rates, then converted in place
        exposure = OedExposure(**{kind: str(path) for kind, path in sources.items()}, check_oed=False, use_field=True,
                               currency_conversion=checked)
        frames = {kind: getattr(exposure, kind).dataframe for kind in sources}
        missing = _missing_pairs(frames, reporting, checked)
        if missing:
            listed = ", ".join(f"{code} in the {kind} file" for kind, code, _ in missing)
            rows = ", ".join(sorted({f"{code},{reporting},<rate>" for _, code, _ in missing}))
            raise ValueError(f"no rate of exchange to the reporting currency {reporting} for {listed}; add the rows "
                             f"(cur_from,cur_to,roe) {rows} to the portfolio's currency_conversion_json")
        exposure.reporting_currency = reporting  # ods-tools converts the loaded frames
        output_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for kind, path in sources.items():
            target = output_dir / path.name
            frame = getattr(exposure, kind).dataframe
            tmp = target.with_name(f".{target.name}.tmp")
            if path.suffix.lower() in (".parquet", ".pq"):
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
            tmp.replace(target)
            written[kind] = target
    return written
