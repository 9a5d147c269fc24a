"""/v2/portfolios/: CRUD, OED uploads (streamed, size-limited, sanitised), downloads, validation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import require_shared
from tests.plugins.conftest import auth


@pytest.fixture
def exposure() -> Path:
    return require_shared("piwind") / "exposure_data"


def _portfolio(client, user: str = "alice", **body) -> dict:
    reply = client.post("/v2/portfolios/", json={"name": "loc10", **body}, headers=auth(user))
    assert reply.status_code == 201, reply.text
    return reply.json()


def _upload(client, pid: int, kind: str, name: str, data: bytes, user: str = "alice"):
    return client.post(f"/v2/portfolios/{pid}/{kind}/", files={"file": (name, data, "text/csv")}, headers=auth(user))


def test_crud(client) -> None:
    p = _portfolio(client)
    assert p["location_file"] is None and p["validation_status"] == "NONE"
    assert client.put(f"/v2/portfolios/{p['id']}/", json={"name": "renamed"}, headers=auth("alice")).json()[
        "name"] == "renamed"
    assert client.patch(f"/v2/portfolios/{p['id']}/", json={"name": "again"}, headers=auth("alice")).json()[
        "name"] == "again"
    assert [x["id"] for x in client.get("/v2/portfolios/?name__contains=ga", headers=auth("alice")).json()] == [p["id"]]
    assert client.post("/v2/portfolios/", json={}, headers=auth("alice")).status_code == 422
    assert client.post("/v2/portfolios/", json={"name": ""}, headers=auth("alice")).status_code == 422
    assert client.delete(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).status_code == 204
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).status_code == 404


def test_upload_download_delete(client, exposure: Path, settings) -> None:
    p = _portfolio(client)
    data = (exposure / "SourceLocOEDPiWind10.csv").read_bytes()
    reply = _upload(client, p["id"], "location_file", "../../etc/Source Loc;rm -rf.csv", data)
    assert reply.status_code == 200, reply.text
    stored = reply.json()["stored"]
    assert "/" not in stored and ".." not in stored and " " not in stored and ";" not in stored
    on_disk = list(Path(settings.storage_url.removeprefix("file://")).rglob("*.csv"))
    assert len(on_disk) == 1 and on_disk[0].read_bytes() == data
    got = client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice"))
    assert got.status_code == 200 and got.content == data
    detail = client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).json()
    assert detail["location_file"]["name"] == "Source Loc;rm -rf.csv"
    # a new upload replaces (and removes) the old file
    assert _upload(client, p["id"], "location_file", "loc.csv", data).status_code == 200
    assert len(list(Path(settings.storage_url.removeprefix("file://")).rglob("*.csv"))) == 1
    assert client.delete(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).status_code == 204
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).status_code == 404
    assert not list(Path(settings.storage_url.removeprefix("file://")).rglob("*.csv"))


def test_upload_refusals(client, settings) -> None:
    p = _portfolio(client)
    assert _upload(client, p["id"], "accounts_file", "acc.exe", b"x").status_code == 400
    too_big = b"PortNumber\n" + b"1\n" * (settings.max_upload_bytes // 2 + 10)
    reply = _upload(client, p["id"], "accounts_file", "acc.csv", too_big)
    assert reply.status_code == 413 and "PERILFLOW_MAX_UPLOAD_MB" in reply.json()["detail"]
    root = Path(settings.storage_url.removeprefix("file://"))
    assert not [x for x in root.rglob("*") if x.is_file()]  # the partial file was removed
    assert client.post(f"/v2/portfolios/{p['id']}/accounts_file/", headers=auth("alice")).status_code == 422
    assert _upload(client, 999, "accounts_file", "acc.csv", b"x").status_code == 404
    assert client.post(f"/v2/portfolios/{p['id']}/location_file/", files={"file": ("a.csv", b"x")}).status_code == 401


def test_groups(client, add_member, exposure: Path) -> None:
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    p = _portfolio(client, "alice")
    data = (exposure / "SourceLocOEDPiWind10.csv").read_bytes()
    assert _upload(client, p["id"], "location_file", "loc.csv", data).status_code == 200
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("bob")).status_code == 404
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("bob")).status_code == 404
    assert _upload(client, p["id"], "location_file", "loc.csv", data, user="bob").status_code == 403
    assert client.post(f"/v2/portfolios/{p['id']}/validate/", headers=auth("bob")).status_code == 403
    assert client.delete(f"/v2/portfolios/{p['id']}/", headers=auth("bob")).status_code == 403
    assert client.get("/v2/portfolios/", headers=auth("bob")).json() == []


def test_validate_good_files(client, exposure: Path) -> None:
    p = _portfolio(client)
    assert client.post(f"/v2/portfolios/{p['id']}/validate/", headers=auth("alice")).status_code == 400
    _upload(client, p["id"], "location_file", "loc.csv", (exposure / "SourceLocOEDPiWind10.csv").read_bytes())
    _upload(client, p["id"], "accounts_file", "acc.csv", (exposure / "SourceAccOEDPiWind.csv").read_bytes())
    reply = client.post(f"/v2/portfolios/{p['id']}/validate/", headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["validation_status"] == "RUN_COMPLETED" and reply.json()["location_file_validated"]
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).json()[
        "validation_status"] == "RUN_COMPLETED"


def _drop_column(text: str, column: str) -> str:
    rows = [line.split(",") for line in text.splitlines()]
    i = rows[0].index(column)
    return "\n".join(",".join(r[:i] + r[i + 1:]) for r in rows) + "\n"


def _set_cell(text: str, row: int, column: str, value: str) -> str:
    rows = [line.split(",") for line in text.splitlines()]
    rows[row][rows[0].index(column)] = value
    return "\n".join(",".join(r) for r in rows) + "\n"


@pytest.mark.parametrize(("change", "column", "row", "words"), [
    (lambda t: _drop_column(t, "LocPerilsCovered"), "LocPerilsCovered", None, "missing"),
    (lambda t: _set_cell(t, 3, "BuildingTIV", "lots"), "BuildingTIV", 3, "not a number"),
])
def test_validate_bad_location_file(client, exposure: Path, change, column, row, words) -> None:
    p = _portfolio(client)
    text = change((exposure / "SourceLocOEDPiWind10.csv").read_text())
    _upload(client, p["id"], "location_file", "my_locations.csv", text.encode())
    reply = client.post(f"/v2/portfolios/{p['id']}/validate/", headers=auth("alice"))
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["validation_status"] == "ERROR"
    problem = next(x for x in body["problems"] if x["column"] == column)
    assert problem["file"] == "my_locations.csv" and problem["row"] == row and problem["fatal"]
    assert words in problem["message"] and problem["fix"]
    again = client.get(f"/v2/portfolios/{p['id']}/validate/", headers=auth("alice")).json()
    assert again["validation_status"] == "ERROR" and again["problems"]


def test_a_replaced_file_goes_when_the_commit_does_a_new_one_when_it_fails(client, settings, monkeypatch) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from perilflow.plugins.db.models import StoredFile

    storage = Path(settings.storage_url.removeprefix("file://"))
    p = _portfolio(client)
    assert _upload(client, p["id"], "location_file", "a.csv", b"LocNumber\n1\n").status_code == 200
    [first] = list(storage.rglob("*.csv"))

    real_commit = Session.commit

    def failing_commit(self):
        """Fails the commit of the request that stored b.csv (its row is flushed, so visible here)."""
        if self.scalar(select(StoredFile.id).where(StoredFile.filename == "b.csv")) is not None:
            raise RuntimeError("database went away")
        return real_commit(self)

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(RuntimeError, match="went away"):
        _upload(client, p["id"], "location_file", "b.csv", b"LocNumber\n2\n")
    monkeypatch.setattr(Session, "commit", real_commit)
    # the row still names the first file, and the file is still there to download; the new upload,
    # which no row names, is gone
    assert first.exists() and list(storage.rglob("*.csv")) == [first]
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).content == b"LocNumber\n1\n"

    assert _upload(client, p["id"], "location_file", "c.csv", b"LocNumber\n3\n").status_code == 200
    assert not first.exists()  # replaced and committed: the old file is gone
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).content == b"LocNumber\n3\n"


RATES_CSV = b"cur_from,cur_to,roe\nEUR,USD,1.1\nGBP,USD,1.25\n"
RATES_JSON = {"currency_conversion_type": "DictBasedCurrencyRates", "source_type": "list",
              "currency_rates": [["EUR", "USD", 1.1], ["GBP", "USD", 1.25]]}


def test_currency_conversion_and_reporting_currency(client, add_member) -> None:
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    p = _portfolio(client)
    pid = p["id"]
    assert p["currency_conversion_json"] is None and p["reporting_currency"] is None
    url = f"/v2/portfolios/{pid}/currency_conversion_json/"
    assert client.get(url, headers=auth("alice")).status_code == 404
    # a CSV of rates is converted to the JSON the worker uses
    reply = client.post(url, files={"file": ("rates.csv", RATES_CSV)}, headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert reply.json() == RATES_JSON == client.get(url, headers=auth("alice")).json()
    # the JSON itself is accepted too (and replaces the rates)
    one = {**RATES_JSON, "currency_rates": [["USD", "GBP", 0.8]]}
    reply = client.post(url, files={"file": ("c.json", json.dumps(one).encode())}, headers=auth("alice"))
    assert reply.status_code == 200 and client.get(url, headers=auth("alice")).json() == one
    # bad rates are refused with the field and the fix; the stored rates stay
    for name, data, words in (
            ("r.csv", b"from,to,rate\nEUR,USD,1\n", "cur_from,cur_to,roe"),
            ("r.csv", b"cur_from,cur_to,roe\nEUR,USD,0\n", "roe 0.0"),
            ("r.csv", b"cur_from,cur_to,roe\nEURO,USD,1\n", "cur_from 'EURO'"),
            ("r.csv", b"\xff\xfe\x00", "UTF-8"),
            ("r.json", b"{not json", "not valid JSON"),
            ("r.json", json.dumps({**RATES_JSON, "currency_conversion_type": "FxCurrencyRates"}).encode(),
             "FxCurrencyRates"),
            ("r.json", json.dumps({**RATES_JSON, "source_type": "csv", "file_path": "/etc/rates.csv"}).encode(),
             "source_type 'csv'")):
        reply = client.post(url, files={"file": (name, data)}, headers=auth("alice"))
        assert reply.status_code == 400 and words in reply.json()["file"][0], (data, reply.text)
    assert client.get(url, headers=auth("alice")).json() == one
    # reporting currency
    rc = f"/v2/portfolios/{pid}/reporting_currency/"
    assert client.get(rc, headers=auth("alice")).status_code == 404
    assert client.post(rc, json={"reporting_currency": "USD"}, headers=auth("alice")).json() == {
        "reporting_currency": "USD"}
    assert client.get(rc, headers=auth("alice")).json() == {"reporting_currency": "USD"}
    for bad in ("usd", "US", "DOLLARS", ""):
        reply = client.post(rc, json={"reporting_currency": bad}, headers=auth("alice"))
        assert reply.status_code == 400 and "three capital letters" in reply.json()["reporting_currency"][0]
    assert client.post(rc, json={"currency": "USD"}, headers=auth("alice")).status_code == 422
    detail = client.get(f"/v2/portfolios/{pid}/", headers=auth("alice")).json()
    assert detail["reporting_currency"] == "USD" and detail["currency_conversion_json"].endswith(
        f"/v2/portfolios/{pid}/currency_conversion_json/")
    # another group's user neither reads nor changes them
    assert client.get(url, headers=auth("bob")).status_code == 404
    assert client.post(rc, json={"reporting_currency": "EUR"}, headers=auth("bob")).status_code == 403
    assert client.delete(url, headers=auth("bob")).status_code == 403
    assert client.post(url, files={"file": ("rates.csv", RATES_CSV)}).status_code == 401
    # removal
    assert client.delete(url, headers=auth("alice")).status_code == 204
    assert client.delete(url, headers=auth("alice")).status_code == 404
    assert client.delete(rc, headers=auth("alice")).status_code == 204
    assert client.get(rc, headers=auth("alice")).status_code == 404
    detail = client.get(f"/v2/portfolios/{pid}/", headers=auth("alice")).json()
    assert detail["currency_conversion_json"] is None and detail["reporting_currency"] is None


def test_cli_upload_sets_the_reporting_currency_and_rates(app, monkeypatch, capsys, exposure: Path,
                                                          tmp_path: Path) -> None:
    """``perilflow portfolios upload --reporting-currency USD --currency-rates rates.csv`` (API in-process)."""
    from fastapi.testclient import TestClient

    from perilflow import cli
    from perilflow.client import PerilflowClient

    def make(args):
        client = PerilflowClient("http://testserver", token="alice")
        client._http = TestClient(app, base_url="http://testserver/")
        return client

    monkeypatch.setattr(cli, "_client", make)
    (tmp_path / "rates.csv").write_bytes(RATES_CSV)
    code = cli.main(["portfolios", "upload", "--name", "usd", "--location", str(exposure / "SourceLocOEDPiWind10.csv"),
                     "--reporting-currency", "USD", "--currency-rates", str(tmp_path / "rates.csv")])
    out = capsys.readouterr().out
    assert code == 0, out
    portfolio = json.loads(out)
    assert portfolio["reporting_currency"] == "USD" and portfolio["currency_conversion_json"]
    code = cli.main(["portfolios", "upload", "--name", "bad", "--location", str(exposure / "SourceLocOEDPiWind10.csv"),
                     "--reporting-currency", "dollars"])
    err = capsys.readouterr().err
    assert code == 2 and "three capital letters" in err and len(err.strip().splitlines()) == 1
    # refused before anything was created
    names = [p["name"] for p in TestClient(app).get("/v2/portfolios/", headers=auth("alice")).json()]
    assert names == ["usd"]


#: AIR-style location columns -> OED (a small mapping in ods-tools' transformation format)
AIR_MAPPING = b"""null_values: ["''", "NULL"]
types:
  ContractID: {type: string}
  LocationID: {type: string}
  CountryISO: {type: string}
  Lat: {type: float}
  Lon: {type: float}
  ReplacementValueA: {type: float}
  ReplacementValueC: {type: float}
  Occ: {type: int}
  Con: {type: int}
  Currency: {type: string}
transform:
  PortNumber:
    - transformation: "'1'"
  AccNumber:
    - transformation: ContractID
  LocNumber:
    - transformation: LocationID
  CountryCode:
    - transformation: CountryISO
  Latitude:
    - transformation: Lat
  Longitude:
    - transformation: Lon
  OccupancyCode:
    - transformation: Occ
  ConstructionCode:
    - transformation: Con
  LocPerilsCovered:
    - transformation: "'WW1'"
  BuildingTIV:
    - transformation: ReplacementValueA
  OtherTIV:
    - transformation: "0"
  ContentsTIV:
    - transformation: ReplacementValueC * 2
      when: CountryISO is 'GB'
    - transformation: ReplacementValueC
  BITIV:
    - transformation: "0"
  LocCurrency:
    - transformation: Currency
"""


def test_exposure_transform_air_to_oed_then_validate(client, add_member, exposure: Path) -> None:
    import pandas as pd

    add_member("alice", "team-a")
    add_member("bob", "team-b")
    oed = pd.read_csv(exposure / "SourceLocOEDPiWind10.csv")
    air = pd.DataFrame({
        "ContractID": oed["AccNumber"], "LocationID": oed["LocNumber"], "CountryISO": oed["CountryCode"],
        "Lat": oed["Latitude"], "Lon": oed["Longitude"], "ReplacementValueA": oed["BuildingTIV"],
        "ReplacementValueC": oed["ContentsTIV"], "Occ": oed["OccupancyCode"], "Con": oed["ConstructionCode"],
        "Currency": oed["LocCurrency"]})
    p = _portfolio(client)
    pid = p["id"]
    assert p["exposure_transform_status"] == "NONE"
    assert _upload(client, pid, "accounts_file", "acc.csv", (exposure / "SourceAccOEDPiWind.csv").read_bytes()
                   ).status_code == 200
    url = f"/v2/portfolios/{pid}/exposure_transform/"

    air_csv = air.to_csv(index=False).encode()

    def send(file_type="location", mapping=AIR_MAPPING, data=air_csv, user="alice"):
        return client.post(url, data={"file_type": file_type}, headers=auth(user), files={
            "mapping_file": ("air_to_oed.yaml", mapping), "transform_file": ("air_loc.csv", data)})

    reply = send()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["exposure_transform_status"] == "RUN_COMPLETED" and body["rows"] == 10
    assert body["validation_status"] == "RUN_COMPLETED", body["problems"]
    assert body["location_file"]["name"] == "air_loc-transformed.csv"
    got = pd.read_csv(io.BytesIO(client.get(f"/v2/portfolios/{pid}/location_file/", headers=auth("alice")).content))
    # the same columns computed directly: contents doubled in GB (every PiWind location), the rest copied
    assert got["LocNumber"].tolist() == oed["LocNumber"].tolist()
    assert got["BuildingTIV"].tolist() == oed["BuildingTIV"].astype(float).tolist()
    assert got["ContentsTIV"].tolist() == (oed["ContentsTIV"] * 2.0).tolist()
    assert got["Latitude"].tolist() == oed["Latitude"].tolist() and set(got["PortNumber"]) == {1}
    detail = client.get(f"/v2/portfolios/{pid}/", headers=auth("alice")).json()
    assert detail["exposure_transform_status"] == "RUN_COMPLETED" and detail["validation_status"] == "RUN_COMPLETED"

    # refusals: the field named, the status ERROR, the message kept in errors_file/; the location file stays
    reply = send(file_type="loc")
    assert reply.status_code == 400 and "location, accounts" in reply.json()["file_type"][0]
    reply = send(mapping=b"types: [")
    assert reply.status_code == 400 and "readable YAML" in reply.json()["mapping_file"][0]
    assert reply.json()["exposure_transform_status"] == "ERROR"
    assert "readable YAML" in client.get(f"/v2/portfolios/{pid}/errors_file/", headers=auth("alice")).text
    reply = send(mapping=AIR_MAPPING.replace(b"ReplacementValueA * 2", b"ReplacementValueA *+ 2").replace(
        b"ReplacementValueC * 2", b"ReplacementValueC *+ 2"))
    assert reply.status_code == 400 and "transform.ContentsTIV" in reply.json()["mapping_file"][0]
    reply = send(data=b"Foo,Bar\n1,2\n")
    assert reply.status_code == 400 and "none of the mapping's input columns" in reply.json()["mapping_file"][0]
    assert client.get(f"/v2/portfolios/{pid}/", headers=auth("alice")).json()["exposure_transform_status"] == "ERROR"
    kept = client.get(f"/v2/portfolios/{pid}/location_file/", headers=auth("alice")).content
    pd.testing.assert_frame_equal(got, pd.read_csv(io.BytesIO(kept)))
    # access
    assert send(user="bob").status_code == 403
    assert client.post(url, data={"file_type": "location"}).status_code == 401
    assert client.post("/v2/portfolios/999/exposure_transform/", data={"file_type": "location"}, headers=auth("alice"),
                       files={"mapping_file": ("m.yaml", AIR_MAPPING), "transform_file": ("a.csv", b"x\n")}
                       ).status_code == 404
