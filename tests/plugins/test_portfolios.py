"""/v2/portfolios/: CRUD, OED uploads (streamed, size-limited, sanitised), downloads, validation."""

from __future__ import annotations

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


def test_a_replaced_file_goes_only_when_the_commit_does(client, settings, monkeypatch) -> None:
    from sqlalchemy.orm import Session

    storage = Path(settings.storage_url.removeprefix("file://"))
    p = _portfolio(client)
    assert _upload(client, p["id"], "location_file", "a.csv", b"LocNumber\n1\n").status_code == 200
    [first] = list(storage.rglob("*.csv"))

    real_commit = Session.commit

    def failing_commit(self):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(RuntimeError, match="went away"):
        _upload(client, p["id"], "location_file", "b.csv", b"LocNumber\n2\n")
    monkeypatch.setattr(Session, "commit", real_commit)
    # the row still names the first file, and the file is still there to download
    assert first.exists()
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).content == b"LocNumber\n1\n"

    assert _upload(client, p["id"], "location_file", "c.csv", b"LocNumber\n3\n").status_code == 200
    assert not first.exists()  # replaced and committed: the old file is gone
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).content == b"LocNumber\n3\n"
