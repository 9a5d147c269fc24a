"""Currency conversion of OED exposure to a reporting currency (kernel.oed.currency and the
pre-analysis-hook step that applies it). Reads ../shared/piwind (PiWind loc10, in GBP)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from perilflow.kernel.oed import load_exposure
from perilflow.kernel.oed.currency import (
    check_conversion,
    check_reporting_currency,
    convert_exposure_files,
    rates_from_csv,
)
from perilflow.kernel.pipeline import _fetch_exposure, pre_analysis_hook
from tests.conftest import require_shared

RATES = {"currency_conversion_type": "DictBasedCurrencyRates", "source_type": "list",
         "currency_rates": [["EUR", "USD", 1.1], ["USD", "GBP", 0.8]]}
#: amounts of PiWind's files, all given as amounts (no percentage deductibles or limits)
AMOUNTS = {"location": ["BuildingTIV", "OtherTIV", "ContentsTIV", "BITIV"],
           "account": ["LayerLimit", "LayerAttachment"],
           "ri_info": ["RiskLimit", "RiskAttachment", "OccLimit", "OccAttachment"]}
CURRENCY = {"location": "LocCurrency", "account": "AccCurrency", "ri_info": "ReinsCurrency"}


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """PiWind loc10 with its first four locations in EUR (the rest and every other file in GBP)."""
    data = require_shared("piwind") / "exposure_data"
    location = pd.read_csv(data / "SourceLocOEDPiWind10.csv")
    location.loc[:3, "LocCurrency"] = "EUR"
    location.to_csv(tmp_path / "location.csv", index=False)
    return {"location": tmp_path / "location.csv", "account": data / "SourceAccOEDPiWind.csv",
            "ri_info": data / "SourceReinsInfoOEDPiWind.csv", "ri_scope": data / "SourceReinsScopeOEDPiWind.csv"}


def naive_rate(currency: str, reporting: str) -> float:
    """The rate a row's amounts are multiplied by: the pair as given, or the inverse of the reverse pair."""
    for cur_from, cur_to, roe in RATES["currency_rates"]:
        if (cur_from, cur_to) == (currency, reporting):
            return roe
        if (cur_to, cur_from) == (currency, reporting):
            return 1 / roe
    assert currency == reporting
    return 1.0


def test_amounts_are_converted_row_by_row_and_the_original_currency_kept(sources, tmp_path: Path) -> None:
    written = convert_exposure_files(sources, "USD", RATES, tmp_path / "out")
    assert sorted(written) == sorted(sources)
    for kind, columns in AMOUNTS.items():
        raw = pd.read_csv(sources[kind])
        converted = pd.read_csv(written[kind])
        assert (converted[CURRENCY[kind]] == "USD").all()
        assert converted["OriginalCurrency"].tolist() == raw[CURRENCY[kind]].tolist()
        for i, row in raw.iterrows():
            rate = naive_rate(row[CURRENCY[kind]], "USD")
            assert converted.loc[i, "RateOfExchange"] == pytest.approx(rate, rel=1e-15)
            for column in columns:
                assert converted.loc[i, column] == pytest.approx(row[column] * rate, rel=1e-12), (kind, i, column)
    # everything but amounts and currencies is unchanged, and the files load and check as OED
    raw, converted = pd.read_csv(sources["location"]), pd.read_csv(written["location"])
    same = [c for c in raw.columns if c not in AMOUNTS["location"] + ["LocCurrency"]]
    pd.testing.assert_frame_equal(raw[same], converted[same], check_dtype=False)
    exposure = load_exposure(written["location"], written["account"], written["ri_info"], written["ri_scope"])
    assert not exposure.warnings and len(exposure.location) == 10


def test_a_currency_without_a_rate_is_named_with_the_rows_to_add(sources, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        convert_exposure_files(sources, "JPY", RATES, tmp_path / "out")
    message = str(caught.value)
    assert "EUR in the location file" in message and "GBP in the account file" in message
    assert "EUR,JPY,<rate>" in message and "GBP,JPY,<rate>" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="GBP in the location file"):
        convert_exposure_files(sources, "EUR", None, tmp_path / "out")


def test_the_reporting_currency_of_every_row_needs_no_rate(sources, tmp_path: Path) -> None:
    data = require_shared("piwind") / "exposure_data"
    gbp = {"location": data / "SourceLocOEDPiWind10.csv", "account": data / "SourceAccOEDPiWind.csv"}
    written = convert_exposure_files(gbp, "GBP", None, tmp_path / "out")
    raw, converted = pd.read_csv(gbp["location"]), pd.read_csv(written["location"])
    assert converted["BuildingTIV"].tolist() == raw["BuildingTIV"].tolist()


def test_rates_from_csv_and_json_checks() -> None:
    assert rates_from_csv(b"\xef\xbb\xbfcur_from, cur_to, roe\nEUR, USD, 1.1\nUSD,GBP,0.8\n") == RATES
    assert check_conversion(json.loads(json.dumps(RATES))) == RATES
    assert check_reporting_currency(" USD ") == "USD"
    for bad, words in ((b"cur_from,cur_to\nEUR,USD\n", "missing column(s) ['roe']"),
                       (b"cur_from,cur_to,roe\n", "no rates"),
                       (b"cur_from,cur_to,roe\nEUR,USD,inf\n", "finite number"),
                       (b"cur_from,cur_to,roe\nEUR,EUR,2\n", "to itself must be 1"),
                       (b"cur_from,cur_to,roe\nEUR,USD,1\nEUR,USD,2\n", "more than once")):
        with pytest.raises(ValueError, match=None) as caught:
            rates_from_csv(bad)
        assert words in str(caught.value), (bad, caught.value)
    for bad, words in (([], "JSON object"),
                       ({**RATES, "currency_conversion_type": "FxCurrencyRates"}, "inline"),
                       ({**RATES, "source_type": "parquet"}, "'list'"),
                       ({**RATES, "currency_rates": [["EUR", "USD"]]}, "[cur_from, cur_to, roe]"),
                       ({**RATES, "currency_rates": [["EUR", "USD", True]]}, "roe True"),
                       ({**RATES, "extra": 1}, "unknown key")):
        with pytest.raises(ValueError) as caught:
            check_conversion(bad)
        assert words in str(caught.value), (bad, caught.value)
    with pytest.raises(ValueError, match="three capital letters"):
        check_reporting_currency("usd")


def test_the_pre_analysis_hook_step_stores_the_converted_exposure(sources, tmp_path: Path) -> None:
    prefix = str(tmp_path / "stored")
    portfolio = {kind: str(path) for kind, path in sources.items()}
    result = pre_analysis_hook({"portfolio": portfolio, "exposure": prefix,
                                "currency": {"reporting_currency": "USD", "conversion": RATES}})
    assert result["locations"] == 10
    stored = _fetch_exposure(prefix, tmp_path / "fetched")
    location = load_exposure(stored["location"], validate=False).location
    raw = pd.read_csv(sources["location"])
    expected = [tiv * naive_rate(cur, "USD") for tiv, cur in zip(raw["BuildingTIV"], raw["LocCurrency"], strict=True)]
    assert location["BuildingTIV"].tolist() == pytest.approx(expected, rel=1e-12)
    assert set(location["LocCurrency"]) == {"USD"}
    # without a reporting currency the files are stored as uploaded
    pre_analysis_hook({"portfolio": portfolio, "exposure": str(tmp_path / "plain"), "currency": None})
    plain = _fetch_exposure(str(tmp_path / "plain"), tmp_path / "fetched-plain")
    assert plain["location"].read_bytes() == sources["location"].read_bytes()


def test_an_mdk_config_with_a_reporting_currency_converts_before_input_generation(tmp_path: Path) -> None:
    """``reporting_currency`` + ``currency_conversion_json`` (naming a CSV of rates, as ods-tools
    allows) in oasislmf.json: every coverage's TIV is the GBP one times the GBP->USD rate."""
    from perilflow.kernel.inputs.generate import generate_files

    piwind = require_shared("piwind")
    config = json.loads((piwind / "oasislmf_loc10.json").read_text())
    config = {k: str(piwind / v) if isinstance(v, str) and "/" in v else v for k, v in config.items()}
    (tmp_path / "rates.csv").write_text("cur_from,cur_to,roe\nUSD,GBP,0.8\n")
    (tmp_path / "conversion.json").write_text(json.dumps({
        "currency_conversion_type": "DictBasedCurrencyRates", "source_type": "csv", "file_path": "rates.csv"}))
    (tmp_path / "plain.json").write_text(json.dumps(config))
    (tmp_path / "usd.json").write_text(json.dumps({**config, "reporting_currency": "USD",
                                                   "currency_conversion_json": "conversion.json"}))
    generate_files(tmp_path / "plain.json", tmp_path / "gbp", file_format="csv")
    generate_files(tmp_path / "usd.json", tmp_path / "usd", file_format="csv")
    gbp, usd = pd.read_csv(tmp_path / "gbp" / "coverages.csv"), pd.read_csv(tmp_path / "usd" / "coverages.csv")
    assert usd["coverage_id"].tolist() == gbp["coverage_id"].tolist()
    assert usd["tiv"].tolist() == pytest.approx((gbp["tiv"] / 0.8).tolist(), rel=1e-6)
    # the FM terms given as amounts too: the layer limits and attachments (fm_policytc's profiles)
    profiles = {name: pd.read_csv(tmp_path / name / "fm_profile.csv") for name in ("gbp", "usd")}
    assert profiles["usd"]["limit1"].max() == pytest.approx(profiles["gbp"]["limit1"].max() / 0.8, rel=1e-6)
    # a rate missing for a currency of the exposure stops the run with the rows to add
    (tmp_path / "jpy.json").write_text(json.dumps({**config, "reporting_currency": "JPY",
                                                   "currency_conversion_json": "conversion.json"}))
    with pytest.raises(ValueError, match="GBP,JPY,<rate>"):
        generate_files(tmp_path / "jpy.json", tmp_path / "jpy", file_format="csv")
