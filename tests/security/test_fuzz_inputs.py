"""Bad input at the upload and settings endpoints (issue 8): hypothesis throws >= 1,000 malformed inputs.

Every input must be refused with a 4xx whose body names the field or the problem, never a 5xx,
and must leave nothing half-done: no partial or temporary file anywhere in storage, every file
in storage belongs to a ``stored_files`` row, and the target object's file/settings fields are
as before (or, for a malformed exposure file, which is stored and then refused by ``validate/``
as OasisPlatform does, the portfolio's validation status is ERROR and the stored file is whole).

Hypothesis is bounded (``max_examples``, no deadline, ``derandomize=True``) so CI is
deterministic; each test counts the inputs it sent and checks its quota; the quotas add up
to at least 1,000 per database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from perilflow.plugins.db import make_sessionmaker
from perilflow.plugins.db.models import Analysis, StoredFile
from tests.conftest import require_shared
from tests.plugins.conftest import auth
from tests.security.conftest import COUNTS, MAX_UPLOAD_MB

#: inputs each test must send; they add up to at least 1,000 per database
QUOTAS = {"exposure_content": 360, "exposure_upload": 140, "data_file_upload": 100, "analysis_settings": 170,
          "model_settings": 110, "settings_files": 80, "dataset_and_image_upload": 60, "tarballs": 140,
          "currency_rates": 80}
ALICE = auth("alice")
FILES = {"location_file": "SourceLocOEDPiWind10.csv", "accounts_file": "SourceAccOEDPiWind.csv",
         "reinsurance_info_file": "SourceReinsInfoOEDPiWind.csv",
         "reinsurance_scope_file": "SourceReinsScopeOEDPiWind.csv"}
OED_TABLE = {"location_file": "Loc", "accounts_file": "Acc", "reinsurance_info_file": "ReinsInfo",
             "reinsurance_scope_file": "ReinsScope"}
NUMERIC = {"location_file": ["BuildingTIV", "ContentsTIV", "Latitude", "Longitude"],
           "accounts_file": ["LayerLimit", "LayerAttachment", "LayerParticipation"],
           "reinsurance_info_file": ["CededPercent", "RiskLimit", "OccLimit", "PlacedPercent"],
           "reinsurance_scope_file": ["CededPercent"]}
PERIL = {"location_file": "LocPerilsCovered", "accounts_file": "PolPerilsCovered",
         "reinsurance_info_file": "ReinsPeril"}
LIMIT = int(MAX_UPLOAD_MB * 1024 * 1024)


def fuzz(name: str):
    """Hypothesis settings for one test: bounded, deterministic, no example database."""
    return hsettings(max_examples=QUOTAS[name], deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


def test_quotas_add_up_to_a_thousand() -> None:
    assert sum(QUOTAS.values()) >= 1000


def refused(reply, *words: str) -> None:
    """A 4xx (never a 5xx, never a success) whose body names one of ``words``."""
    assert 400 <= reply.status_code < 500, f"{reply.request.method} {reply.request.url}: " \
                                           f"{reply.status_code} {reply.text[:600]}"
    text = reply.text.lower()
    assert any(w.lower() in text for w in words), f"the reply names none of {words}: {reply.text[:600]}"


def stored_uris(app) -> set[str]:
    with make_sessionmaker(app.state.perilflow_engine)() as session:
        return {uri.removeprefix("file://") for uri in session.scalars(select(StoredFile.uri))}


def assert_storage_clean(app, root: Path, extra: set[Path] = frozenset()) -> None:
    """Every file in storage is a recorded file (or one the test put there); no partial or temporary file;
    every recorded file is inside the storage folder (uploaded names cannot climb out of it)."""
    on_disk = {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}
    known = {Path(u) for u in stored_uris(app)} | set(extra)
    outside = sorted(str(p) for p in known if not p.resolve().is_relative_to(root.resolve()))
    assert not outside, f"recorded files outside the storage folder: {outside}"
    stray = sorted(str(p.relative_to(root)) for p in on_disk - known)
    assert not stray, f"files in storage that no row records (partial, temporary or extracted): {stray}"


# ----------------------------------------------------------------------------- exposure files


@pytest.fixture(scope="module")
def exposure() -> dict[str, str]:
    folder = require_shared("piwind") / "exposure_data"
    return {kind: (folder / name).read_text() for kind, name in FILES.items()}


@pytest.fixture(scope="module")
def required_columns(exposure: dict[str, str]) -> dict[str, list[str]]:
    """Columns of the PiWind files that OED requires (Property field status R)."""
    from perilflow.kernel.oed.exposure import oed_schema

    fields = oed_schema().schema["input_fields"]
    out = {}
    for kind, text in exposure.items():
        table = {name.lower(): info for name, info in fields[OED_TABLE[kind]].items()}
        header = text.splitlines()[0].split(",")
        out[kind] = [c for c in header if table.get(c.lower(), {}).get("Property field status") == "R"]
    return out


def _rows(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.splitlines()]


def _csv(rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in rows) + "\n"


def _set_cell(text: str, column: str, row: int, value: str) -> str:
    rows = _rows(text)
    index = rows[0].index(column)
    rows[1 + row % (len(rows) - 1)][index] = value
    return _csv(rows)


text_cell = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll")), min_size=1, max_size=12)
huge_number = st.one_of(st.integers(min_value=310, max_value=400).map(lambda n: "9" * n),
                        st.integers(min_value=309, max_value=9999).map(lambda e: f"1e{e}"),
                        st.integers(min_value=309, max_value=9999).map(lambda e: f"-7.5E+{e}"))


@st.composite
def bad_exposure(draw, exposure: dict[str, str], required: dict[str, list[str]]) -> dict[str, Any]:
    """A malformed OED file: (kind, uploaded name, bytes, words the refusal must name)."""
    kind = draw(st.sampled_from(sorted(FILES)))
    text = exposure[kind]
    rows = _rows(text)
    suffix = ".csv"
    how = draw(st.sampled_from(["junk", "latin-1", "utf-16", "ragged", "quote", "wrong type", "missing column",
                                "unknown peril", "gigantic", "empty", "header only", "parquet junk"]))
    column: str | None = None
    if how == "junk":
        data = b"\x80" + draw(st.binary(min_size=0, max_size=3000))  # 0x80 never starts UTF-8
        words = ["utf-8", "cannot parse"]
    elif how == "latin-1":
        accented = draw(st.lists(st.characters(min_codepoint=0xC0, max_codepoint=0xFF), min_size=1, max_size=5))
        cell = "".join(c + "x" for c in accented)  # each followed by ASCII: never valid UTF-8
        data = _set_cell(text, rows[0][draw(st.integers(0, len(rows[0]) - 1))], draw(st.integers(0, 50)),
                         cell).encode("latin-1")
        words = ["utf-8"]
    elif how == "utf-16":
        data = text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"])))
        words = ["utf-8", "cannot parse", "nul bytes"]
    elif how == "ragged":
        extra = draw(st.integers(1, 30))
        row = draw(st.integers(1, len(rows) - 1))
        rows[row] = rows[row] + ["1"] * extra
        data = _csv(rows).encode()
        words = ["cannot parse", "more cells than the header"]
    elif how == "quote":
        row = draw(st.integers(1, len(rows) - 1))
        rows[row][0] = '"' + rows[row][0]
        data = _csv(rows).encode()
        words = ["cannot parse", "eof"]
    elif how == "wrong type":
        column = draw(st.sampled_from(NUMERIC[kind]))
        value = draw(text_cell.filter(lambda s: s.lower() not in ("nan", "inf", "infinity", "e", "n")))
        data = _set_cell(text, column, draw(st.integers(0, 50)), value).encode()
        words = [column]
    elif how == "missing column":
        column = draw(st.sampled_from(required[kind]))
        index = rows[0].index(column)
        data = _csv([r[:index] + r[index + 1:] for r in rows]).encode()
        words = [column]
    elif how == "unknown peril" and kind in PERIL:
        column = PERIL[kind]
        code = draw(st.text(alphabet="QXZJ", min_size=2, max_size=4))  # no OED peril code uses only these
        value = draw(st.sampled_from([code, f"WW1;{code}", f"{code};WTC"]))
        data = _set_cell(text, column, draw(st.integers(0, 50)), value).encode()
        words = [column, "peril"]
    elif how in ("gigantic", "unknown peril"):
        column = draw(st.sampled_from(NUMERIC[kind]))
        data = _set_cell(text, column, draw(st.integers(0, 50)), draw(huge_number)).encode()
        words = [column]
    elif how == "empty":
        data = b""
        words = ["empty"]
    elif how == "header only":
        data = (text.splitlines()[0] + "\n").encode()
        words = ["no data rows"]
    else:
        suffix = draw(st.sampled_from([".parquet", ".pq"]))
        data = draw(st.sampled_from([b"", b"PAR1", b"PAR1PAR1"])) + draw(st.binary(max_size=2000))
        words = ["parquet"]
    # any name, "/", "\\" and ".." included: it must end up as one safe file name inside the portfolio folder
    stem = draw(st.one_of(st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1,
                                  max_size=40),
                          st.sampled_from(["../../../etc/cron.d/x", "..\\..\\win", "a/../../b", "/abs/loc",
                                           "~/.ssh/x"])))
    return {"kind": kind, "how": how, "name": f"{stem}{suffix}", "data": data, "words": words, "column": column}


def test_malformed_exposure_files_are_refused_by_validate(client, app, storage_root, exposure,
                                                           required_columns) -> None:
    """Upload (stored as sent, as the reference) then ``validate/``: 400 listing the problems, nothing half-done."""
    valid = {kind: text.encode() for kind, text in exposure.items()}

    @fuzz("exposure_content")
    @given(case=bad_exposure(exposure, required_columns))
    def run(case: dict[str, Any]) -> None:
        sent["exposure_content"] += 1
        pid = client.post("/v2/portfolios/", json={"name": "fuzz"}, headers=ALICE).json()["id"]
        for kind in ("location_file",) + (("reinsurance_info_file", "reinsurance_scope_file")
                                          if case["kind"].startswith("reinsurance") else ()):
            assert client.post(f"/v2/portfolios/{pid}/{kind}/", files={"file": (FILES[kind], valid[kind])},
                               headers=ALICE).status_code == 200
        reply = client.post(f"/v2/portfolios/{pid}/{case['kind']}/", files={"file": (case["name"], case["data"])},
                            headers=ALICE)
        assert reply.status_code == 200, reply.text
        stored = reply.json()
        reply = client.post(f"/v2/portfolios/{pid}/validate/", headers=ALICE)
        refused(reply, *case["words"])
        body = reply.json()
        fatal = [p for p in body["problems"] if p["fatal"]]
        assert body["validation_status"] == "ERROR" and fatal, body
        assert all(p["message"] and p["fix"] for p in fatal), fatal
        if case["column"]:
            assert any(p["column"] == case["column"] for p in fatal), (case["how"], fatal)
        assert str(storage_root) not in reply.text, "a message shows a storage path"
        after = client.get(f"/v2/portfolios/{pid}/", headers=ALICE).json()
        assert after["validation_status"] == "ERROR"
        assert after[case["kind"]]["stored"] == stored["stored"] and after[case["kind"]]["size"] == len(case["data"])
        assert client.get(f"/v2/portfolios/{pid}/{case['kind']}/", headers=ALICE).content == case["data"]
        assert_storage_clean(app, storage_root)

    sent = Counter()
    run()
    COUNTS["exposure_content"] += sent["exposure_content"]
    assert sent["exposure_content"] >= QUOTAS["exposure_content"], sent


# ----------------------------------------------------------------------------- upload requests


@st.composite
def bad_upload(draw, field_name: str = "file", check_suffix: bool = True) -> dict[str, Any]:
    """A malformed upload request: httpx keyword arguments and words the refusal must name."""
    how = draw(st.sampled_from(["oversize", "oversize streamed", "no file field", "file as text field",
                                "not multipart", "broken multipart", "wrong suffix"] if check_suffix else
                               ["oversize", "oversize streamed", "no file field", "file as text field",
                                "not multipart", "broken multipart"]))
    payload = draw(st.binary(min_size=0, max_size=64))
    if how == "oversize":
        size = draw(st.integers(LIMIT + 1, 4 * LIMIT))
        return {"how": how, "kw": {"files": {field_name: ("big.csv", payload * 0 + b"x" * size)}},
                "words": ["upload limit", "mib"]}
    if how == "oversize streamed":  # no Content-Length: the server counts as it reads
        size = draw(st.integers(LIMIT + 1, 4 * LIMIT))
        boundary = "fuzzboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"big.csv\"\r\n"
                "Content-Type: text/csv\r\n\r\n").encode()

        def chunks():
            yield head
            left = size
            while left > 0:
                yield b"y" * min(left, 4096)
                left -= 4096
            yield f"\r\n--{boundary}--\r\n".encode()

        return {"how": how, "kw": {"content": chunks(), "headers": {
            "Content-Type": f"multipart/form-data; boundary={boundary}"}}, "words": ["upload limit", "mib"]}
    if how == "no file field":
        other = draw(st.text(alphabet="abcdefgh", min_size=1, max_size=8).filter(lambda s: s != field_name))
        return {"how": how, "kw": {"files": {other: ("a.csv", payload)}}, "words": [field_name]}
    if how == "file as text field":
        return {"how": how, "kw": {"data": {field_name: payload.decode("latin-1")}}, "words": [field_name]}
    if how == "not multipart":
        content_type = draw(st.sampled_from(["text/csv", "application/json", "application/octet-stream"]))
        return {"how": how, "kw": {"content": payload, "headers": {"Content-Type": content_type}},
                "words": [field_name, "body"]}
    if how == "broken multipart":
        boundary = draw(st.text(alphabet="abcdef0123", min_size=1, max_size=20))
        body = draw(st.sampled_from([b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data\r\n\r\n",
                                     b"garbage" + payload, b"--" + boundary.encode() + b"--\r\n"]))
        return {"how": how, "kw": {"content": body, "headers": {
            "Content-Type": f"multipart/form-data; boundary={boundary}"}},
                "words": [field_name, "body", "content-disposition", "multipart"]}
    suffix = draw(st.sampled_from(["", ".txt", ".exe", ".csv.gz", ".json", ".xlsx", ".csv ", ".parquet.bak"]))
    stem = draw(st.sampled_from(["loc", "../../etc/passwd", "a;rm -rf", "C:\\x\\loc", ".csv", "x" * 200]))
    return {"how": how, "kw": {"files": {field_name: (stem + suffix, payload)}}, "words": ["csv or .parquet"]}


def test_malformed_exposure_uploads_are_refused(client, app, storage_root, exposure) -> None:
    """Refused uploads leave the portfolio's file fields and storage exactly as they were."""
    pid = client.post("/v2/portfolios/", json={"name": "fuzz"}, headers=ALICE).json()["id"]
    assert client.post(f"/v2/portfolios/{pid}/location_file/", files={"file": ("loc.csv", exposure["location_file"])},
                       headers=ALICE).status_code == 200
    before = client.get(f"/v2/portfolios/{pid}/", headers=ALICE).json()

    @fuzz("exposure_upload")
    @given(case=bad_upload(), kind=st.sampled_from(sorted(FILES)))
    def run(case: dict[str, Any], kind: str) -> None:
        sent["exposure_upload"] += 1
        reply = client.post(f"/v2/portfolios/{pid}/{kind}/", headers={**ALICE, **case["kw"].pop("headers", {})},
                            **case["kw"])
        refused(reply, *case["words"])
        assert client.get(f"/v2/portfolios/{pid}/", headers=ALICE).json() == before
        assert_storage_clean(app, storage_root)

    sent = Counter()
    run()
    COUNTS["exposure_upload"] += sent["exposure_upload"]
    assert sent["exposure_upload"] >= QUOTAS["exposure_upload"], sent


def test_malformed_data_file_uploads_are_refused(client, app, storage_root) -> None:
    """``data_files/{id}/content/``: any bytes are content, so only the request itself can be malformed."""
    did = client.post("/v2/data_files/", json={"file_description": "fuzz"}, headers=ALICE).json()["id"]
    assert client.post(f"/v2/data_files/{did}/content/", files={"file": ("a.bin", b"\x00\x01")},
                       headers=ALICE).status_code == 200
    before = client.get(f"/v2/data_files/{did}/", headers=ALICE).json()

    @fuzz("data_file_upload")
    @given(case=bad_upload(check_suffix=False))
    def run(case: dict[str, Any]) -> None:
        sent["data_file_upload"] += 1
        reply = client.post(f"/v2/data_files/{did}/content/", headers={**ALICE, **case["kw"].pop("headers", {})},
                            **case["kw"])
        refused(reply, *case["words"])
        assert client.get(f"/v2/data_files/{did}/", headers=ALICE).json() == before
        assert client.get(f"/v2/data_files/{did}/content/", headers=ALICE).content == b"\x00\x01"
        assert_storage_clean(app, storage_root)

    sent = Counter()
    run()
    COUNTS["data_file_upload"] += sent["data_file_upload"]
    assert sent["data_file_upload"] >= QUOTAS["data_file_upload"], sent


def test_malformed_dataset_and_image_uploads_are_refused(client, app, storage_root) -> None:
    """``datasets/{id}/files/`` (field ``files``) and ``docker-images/{id}/image_file/`` (field ``file``)."""
    did = client.post("/v2/datasets/", json={"name": "d"}, headers=ALICE).json()["id"]
    iid = client.post("/v2/docker-images/", json={"name": "i", "image": "i:1"}, headers=ALICE).json()["id"]
    before = (client.get(f"/v2/datasets/{did}/", headers=ALICE).json(),
              client.get(f"/v2/docker-images/{iid}/", headers=ALICE).json())

    @fuzz("dataset_and_image_upload")
    @given(data=st.data(), route=st.sampled_from(["dataset", "image"]))
    def run(data, route: str) -> None:
        sent["dataset_and_image_upload"] += 1
        field, url = (("files", f"/v2/datasets/{did}/files/") if route == "dataset" else
                      ("file", f"/v2/docker-images/{iid}/image_file/"))
        case = data.draw(bad_upload(field_name=field, check_suffix=False))
        reply = client.post(url, headers={**ALICE, **case["kw"].pop("headers", {})}, **case["kw"])
        refused(reply, *case["words"])
        assert (client.get(f"/v2/datasets/{did}/", headers=ALICE).json(),
                client.get(f"/v2/docker-images/{iid}/", headers=ALICE).json()) == before
        assert_storage_clean(app, storage_root)

    sent = Counter()
    run()
    COUNTS["dataset_and_image_upload"] += sent["dataset_and_image_upload"]
    assert sent["dataset_and_image_upload"] >= QUOTAS["dataset_and_image_upload"], sent


# ----------------------------------------------------------------------------- settings JSON

#: a JSON value of each type, for putting the wrong type into a field
JSON_OF_TYPE = {
    "string": st.one_of(st.text(max_size=20), st.just("")),
    "integer": st.integers(-(2**53), 2**53),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "boolean": st.booleans(),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    "null": st.none(),
}


def _wrong_type(draw, expected: str | list[str]) -> Any:
    allowed = {expected} if isinstance(expected, str) else set(expected)
    if "number" in allowed:
        allowed.add("integer")
    if "integer" in allowed:
        # JSON Schema counts 1.0 as an integer; floats with a fraction are wrong
        return draw(st.one_of(*(JSON_OF_TYPE[t] for t in sorted(set(JSON_OF_TYPE) - allowed - {"number"})),
                              st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))))
    return draw(st.one_of(*(JSON_OF_TYPE[t] for t in sorted(set(JSON_OF_TYPE) - allowed))))


#: raw bodies that are not a JSON object (or not JSON at all), and numbers JSON cannot carry safely
RAW_BODIES = st.one_of(
    st.sampled_from([b"", b"{", b"[]", b"null", b"42", b'"text"', b"{'single': 'quotes'}", b"{\"a\": NaN}",
                     b"{\"gul_threshold\": Infinity}", b"{\"number_of_samples\": 1e999}",
                     b"{\"number_of_samples\": -1e999}", b"\xff\xfe{\x00}\x00", b"{\"a\": \"\xc3\x28\"}"]),
    st.integers(20, 5000).map(lambda n: b'{"number_of_samples": ' + b"9" * n + b"}"),
    st.binary(min_size=1, max_size=200).map(lambda b: b"\x80" + b),
)


@st.composite
def bad_settings(draw, schema: dict[str, Any], valid: dict[str, Any]) -> dict[str, Any]:
    """Settings that break the schema: a required key missing, a wrong type, or a body that is no JSON object."""
    how = draw(st.sampled_from(["missing", "wrong type", "wrong type", "raw", "oversize"]))
    body = json.loads(json.dumps(valid))
    if how == "missing":
        names = draw(st.lists(st.sampled_from(schema["required"]), min_size=1, unique=True))
        for name in names:
            body.pop(name, None)
        return {"how": how, "json": body, "words": names}
    if how == "wrong type":
        typed = sorted(k for k, v in schema["properties"].items() if "type" in v)
        name = draw(st.sampled_from(typed))
        body[name] = _wrong_type(draw, schema["properties"][name]["type"])
        return {"how": how, "json": body, "words": [name]}
    if how == "oversize":
        body["padding"] = "p" * draw(st.integers(LIMIT + 70_000, LIMIT + 200_000))
        return {"how": how, "json": body, "words": ["limit"]}
    return {"how": how, "content": draw(RAW_BODIES), "words": ["json", "body", "number", "field", "object",
                                                                "dictionary", "non_field_errors", "required"]}


def _send(client, path: str, case: dict[str, Any]):
    if "json" in case:
        return client.post(path, content=json.dumps(case["json"]).encode(),
                           headers={**ALICE, "Content-Type": "application/json"})
    return client.post(path, content=case["content"], headers={**ALICE, "Content-Type": "application/json"})


def _settings_schema(handler: str) -> dict[str, Any]:
    from ods_tools.oed import settings as ods

    return getattr(ods, handler).make()._SettingHandler__schemas[0]["schema"]


@pytest.fixture
def analysis_with_settings(client) -> tuple[int, dict[str, Any]]:
    piwind = require_shared("piwind")
    valid = json.loads((piwind / "analysis_settings" / "ord_all_outputs_s10.json").read_text())
    model = client.post("/v2/models/", json={"supplier_id": "S", "model_id": "M", "version_id": "1"},
                        headers=ALICE).json()
    pid = client.post("/v2/portfolios/", json={"name": "p"}, headers=ALICE).json()["id"]
    aid = client.post("/v2/analyses/", json={"name": "a", "portfolio": pid, "model": model["id"]},
                      headers=ALICE).json()["id"]
    assert client.post(f"/v2/analyses/{aid}/settings/", json=valid, headers=ALICE).status_code == 200
    return aid, valid


def test_settings_violating_the_schema_are_refused(client, app, analysis_with_settings) -> None:
    aid, valid = analysis_with_settings
    schema = _settings_schema("AnalysisSettingHandler")
    before = client.get(f"/v2/analyses/{aid}/", headers=ALICE).json()

    @fuzz("analysis_settings")
    @given(case=bad_settings(schema, valid))
    def run(case: dict[str, Any]) -> None:
        sent["analysis_settings"] += 1
        refused(_send(client, f"/v2/analyses/{aid}/settings/", case), *case["words"])
        assert client.get(f"/v2/analyses/{aid}/settings/", headers=ALICE).json() == valid
        assert client.get(f"/v2/analyses/{aid}/", headers=ALICE).json()["modified"] == before["modified"]

    sent = Counter()
    run()
    COUNTS["analysis_settings"] += sent["analysis_settings"]
    assert sent["analysis_settings"] >= QUOTAS["analysis_settings"], sent


def test_model_settings_violating_the_schema_are_refused(client, app) -> None:
    valid = json.loads((require_shared("piwind") / "meta-data" / "model_settings.json").read_text())
    model = client.post("/v2/models/", json={"supplier_id": "S", "model_id": "M", "version_id": "1"},
                        headers=ALICE).json()
    assert client.post(f"/v2/models/{model['id']}/settings/", json=valid, headers=ALICE).status_code == 200
    schema = _settings_schema("ModelSettingHandler")

    @fuzz("model_settings")
    @given(case=bad_settings(schema, valid))
    def run(case: dict[str, Any]) -> None:
        sent["model_settings"] += 1
        refused(_send(client, f"/v2/models/{model['id']}/settings/", case), *case["words"])
        assert client.get(f"/v2/models/{model['id']}/settings/", headers=ALICE).json() == valid
        assert client.get(f"/v2/models/{model['id']}/", headers=ALICE).json()["run_mode"] == model["run_mode"]

    sent = Counter()
    run()
    COUNTS["model_settings"] += sent["model_settings"]
    assert sent["model_settings"] >= QUOTAS["model_settings"], sent


def test_settings_files_and_templates_violating_the_schema_are_refused(client, app, analysis_with_settings) -> None:
    """The same bad settings as an uploaded ``settings_file/`` and as a model's setting template content."""
    aid, valid = analysis_with_settings
    schema = _settings_schema("AnalysisSettingHandler")
    model = client.get(f"/v2/analyses/{aid}/", headers=ALICE).json()["model"]
    templates = f"/v2/models/{model}/setting_templates/"
    template = client.post(templates, json={"name": "t", "file": valid}, headers=ALICE).json()["id"]

    @fuzz("settings_files")
    @given(case=bad_settings(schema, valid), route=st.sampled_from(["settings_file", "template"]))
    def run(case: dict[str, Any], route: str) -> None:
        sent["settings_files"] += 1
        data = json.dumps(case["json"]).encode() if "json" in case else case["content"]
        if route == "settings_file":
            reply = client.post(f"/v2/analyses/{aid}/settings_file/", files={"file": ("s.json", data)}, headers=ALICE)
            refused(reply, *case["words"], "file", "upload limit")
        else:
            refused(_send(client, f"{templates}{template}/content/", case), *case["words"])
        assert client.get(f"/v2/analyses/{aid}/settings_file/", headers=ALICE).json() == valid
        assert client.get(f"{templates}{template}/content/", headers=ALICE).json() == valid

    sent = Counter()
    run()
    COUNTS["settings_files"] += sent["settings_files"]
    assert sent["settings_files"] >= QUOTAS["settings_files"], sent


# ----------------------------------------------------------------------------- tarballs


def _member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read lazily: a zip-bomb member is never held in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


@st.composite
def bad_tarball(draw) -> dict[str, Any]:
    """An unsafe or unreadable tarball: (bytes, words the refusal must name)."""
    how = draw(st.sampled_from(["absolute", "dotdot", "symlink", "hardlink", "device", "fifo", "zip bomb",
                                "bomb header", "junk", "truncated", "empty"]))
    segment = st.text(alphabet="abcxyz_-.0", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
    inner = "/".join(draw(st.lists(segment, min_size=1, max_size=3)))
    good = {"output/gul_S1_aalcalc.csv": b"a,b\n1,2\n"}
    buffer = io.BytesIO()
    words: list[str]
    # a plain tar cut after a whole member is a readable (shorter) archive: cut compressed streams only
    mode = draw(st.sampled_from(["w:gz", "w:bz2"] if how == "truncated" else ["w:gz", "w", "w:bz2"]))
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in good.items():
            archive.addfile(*_member(name, data))
        if how == "absolute":
            archive.addfile(*_member("/" + inner))
            words = ["absolute"]
        elif how == "dotdot":
            parts = inner.split("/")
            parts.insert(draw(st.integers(0, len(parts))), "..")
            archive.addfile(*_member("/".join(parts)))
            words = ["'..'"]
        elif how in ("symlink", "hardlink", "device", "fifo"):
            info = tarfile.TarInfo(inner)
            info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[how]
            info.linkname = draw(st.sampled_from(["/etc/passwd", "output/gul_S1_aalcalc.csv", "../x"]))
            archive.addfile(info)
            words = ["link or special file"]
        elif how == "zip bomb":
            info = tarfile.TarInfo(f"output/{inner}.csv")
            info.size = draw(st.integers(64, 256)) * LIMIT
            archive.addfile(info, io.BufferedReader(_Zeros(info.size)))
            words = ["larger than", "limit"]
    data = buffer.getvalue()
    if how == "junk":
        data = draw(st.binary(min_size=0, max_size=600))
        words = ["not a readable tar"]
    elif how == "truncated":
        data = data[:draw(st.integers(1, len(data) - 10))]
        words = ["not a readable tar"]
    elif how == "empty":
        data = b""
        words = ["not a readable tar"]
    elif how == "bomb header":
        # a header announcing terabytes and no data after it: reading the member would fail with "not
        # readable", so "larger than" proves the refusal came from the header, before any decompression
        info = tarfile.TarInfo(f"output/{inner}.csv")
        info.size = draw(st.integers(2**33, 2**40))
        data = gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + bytes(draw(st.integers(0, 8)) * 512))
        words = ["larger than"]
    return {"how": how, "data": data, "words": words}


def test_unsafe_tarballs_are_refused_without_extracting(client, app, storage_root) -> None:
    """``*_tar_list/`` and ``*_tar_extract/`` on a stored tarball that is unsafe or broken: 400, nothing written."""
    model = client.post("/v2/models/", json={"supplier_id": "S", "model_id": "M", "version_id": "1"},
                        headers=ALICE).json()
    pid = client.post("/v2/portfolios/", json={"name": "p"}, headers=ALICE).json()["id"]
    aid = client.post("/v2/analyses/", json={"name": "a", "portfolio": pid, "model": model["id"]},
                      headers=ALICE).json()["id"]
    tarballs = {"input_file": storage_root / "fuzz" / "input.tar.gz", "output_file": storage_root / "fuzz" / "out.tgz"}
    tarballs["input_file"].parent.mkdir(parents=True)
    with make_sessionmaker(app.state.perilflow_engine).begin() as session:
        analysis = session.get(Analysis, aid)
        analysis.input_file = f"file://{tarballs['input_file']}"
        analysis.output_file = f"file://{tarballs['output_file']}"
    before = client.get(f"/v2/analyses/{aid}/", headers=ALICE).json()

    @fuzz("tarballs")
    @given(case=bad_tarball(), which=st.sampled_from(sorted(tarballs)),
           filename=st.sampled_from(["output/gul_S1_aalcalc.csv", "output/x.csv"]))
    def run(case: dict[str, Any], which: str, filename: str) -> None:
        sent["tarballs"] += 1
        tarballs[which].write_bytes(case["data"])
        refused(client.get(f"/v2/analyses/{aid}/{which}_tar_list/", headers=ALICE), *case["words"])
        refused(client.get(f"/v2/analyses/{aid}/{which}_tar_extract/", params={"filename": filename},
                           headers=ALICE), *case["words"])
        assert client.get(f"/v2/analyses/{aid}/", headers=ALICE).json() == before
        assert_storage_clean(app, storage_root, extra=set(tarballs.values()))

    sent = Counter()
    run()
    COUNTS["tarballs"] += sent["tarballs"]
    assert sent["tarballs"] >= QUOTAS["tarballs"], sent


@pytest.mark.parametrize("filename", ["/etc/passwd", "../secret.csv", "output/../../x", "", " ", "a/../../b"])
def test_tar_extract_filename_outside_the_tarball_is_refused(client, filename) -> None:
    """The ``filename`` parameter is checked before the tarball is opened (400 naming ``filename``)."""
    model = client.post("/v2/models/", json={"supplier_id": "S", "model_id": "M", "version_id": "1"},
                        headers=ALICE).json()
    pid = client.post("/v2/portfolios/", json={"name": "p"}, headers=ALICE).json()["id"]
    aid = client.post("/v2/analyses/", json={"name": "a", "portfolio": pid, "model": model["id"]},
                      headers=ALICE).json()["id"]
    reply = client.get(f"/v2/analyses/{aid}/output_file_tar_extract/", params={"filename": filename}, headers=ALICE)
    refused(reply, "filename")


CODE = st.sampled_from(["EUR", "USD", "GBP", "JPY"])
BAD_CODE = st.one_of(st.sampled_from(["eur", "US", "EURO", "", " ", "E1R", "€", "0", "NaN", "USD;DROP"]),
                     st.text(max_size=6).filter(lambda t: not (len(t.strip()) == 3 and t.strip().isalpha()
                                                               and t.strip().isupper() and t.strip().isascii())))
BAD_ROE = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "", "x", "1e999", "1,5", "True"]),
                    st.floats(max_value=0).map(repr))


@st.composite
def bad_rates(draw) -> dict[str, Any]:
    """A currency rates upload with at least one fault: a bad header, code or rate, non-UTF-8 bytes, or
    JSON of the wrong shape."""
    kind = draw(st.sampled_from(["csv", "csv", "bytes", "json"]))
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=64).filter(lambda b: _not_utf8(b)))
        return {"name": "rates.csv", "data": data}
    if kind == "json":
        value = draw(st.one_of(
            st.lists(st.integers(), max_size=3),
            st.fixed_dictionaries({"currency_conversion_type": st.sampled_from(["FxCurrencyRates", "", "Dict"]),
                                   "source_type": st.just("list"), "currency_rates": st.just([["EUR", "USD", 1]])}),
            st.fixed_dictionaries({"currency_conversion_type": st.just("DictBasedCurrencyRates"),
                                   "source_type": st.sampled_from(["csv", "parquet", "dict", "", "url"]),
                                   "currency_rates": st.just([["EUR", "USD", 1]])}),
            st.fixed_dictionaries({"currency_conversion_type": st.just("DictBasedCurrencyRates"),
                                   "source_type": st.just("list"),
                                   "currency_rates": st.one_of(
                                       st.just([]), st.lists(st.tuples(BAD_CODE, CODE, st.floats(0.1, 10)).map(list),
                                                             min_size=1, max_size=3),
                                       st.lists(st.tuples(CODE, CODE, st.sampled_from([0, -2, None, "1", True]))
                                                .map(list), min_size=1, max_size=3))})))
        return {"name": "rates.json", "data": json.dumps(value).encode()}
    header = draw(st.sampled_from(["cur_from,cur_to,roe", "cur_from,cur_to,roe", "from,to,rate", "cur_from,roe", ""]))
    rows = draw(st.lists(st.tuples(st.one_of(CODE, BAD_CODE), st.one_of(CODE, BAD_CODE),
                                   st.one_of(st.floats(0.01, 100).map(repr), BAD_ROE)), max_size=4))
    faulty = (header != "cur_from,cur_to,roe" or not rows
              or any(not (_code(f) and _code(t)) or not _rate(r) or (f.strip() == t.strip() and float(r) != 1)
                     for f, t, r in rows)
              or len({(f.strip(), t.strip()) for f, t, _ in rows}) < len(rows))
    if not faulty:  # all well-formed: spoil one rate
        rows[0] = (rows[0][0], rows[0][1], "-1")
    text = "\n".join([header, *(",".join(row) for row in rows)]) + "\n"
    return {"name": "rates.csv", "data": text.encode("utf-8", "surrogatepass")}


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _code(text: str) -> bool:
    text = text.strip()
    return len(text) == 3 and text.isascii() and text.isalpha() and text.isupper()


def _rate(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value > 0 and value != float("inf")


def test_malformed_currency_rates_are_refused(client, app) -> None:
    """``portfolios/{id}/currency_conversion_json/``: every malformed rates file is a 4xx naming the field
    ``file``; the portfolio keeps its rates."""
    pid = client.post("/v2/portfolios/", json={"name": "fuzz"}, headers=ALICE).json()["id"]
    url = f"/v2/portfolios/{pid}/currency_conversion_json/"
    good = b"cur_from,cur_to,roe\nEUR,USD,1.1\n"
    assert client.post(url, files={"file": ("rates.csv", good)}, headers=ALICE).status_code == 200
    before = client.get(url, headers=ALICE).json()

    @fuzz("currency_rates")
    @given(case=bad_rates())
    def run(case: dict[str, Any]) -> None:
        sent["currency_rates"] += 1
        reply = client.post(url, files={"file": (case["name"], case["data"])}, headers=ALICE)
        refused(reply, "file")
        assert client.get(url, headers=ALICE).json() == before

    sent = Counter()
    run()
    COUNTS["currency_rates"] += sent["currency_rates"]
    assert sent["currency_rates"] >= QUOTAS["currency_rates"], sent
