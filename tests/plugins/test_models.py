"""/v2/models/: CRUD, groups, settings, chunking, versions."""

from __future__ import annotations

import json

from tests.conftest import require_shared
from tests.plugins.conftest import auth

PIWIND = {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1"}


def _create(client, user: str = "alice", **extra) -> dict:
    reply = client.post("/v2/models/", json={**PIWIND, **extra}, headers=auth(user))
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_crud_happy_path(client) -> None:
    model = _create(client, runtime={"model_data_dir": "PiWind/model_data"})
    assert model["settings"].endswith(f"/v2/models/{model['id']}/settings/")
    assert model["runtime"] == {"model_data_dir": "PiWind/model_data"}
    assert [m["id"] for m in client.get("/v2/models/", headers=auth("alice")).json()] == [model["id"]]
    assert client.get("/v2/models/?model_id__contains=Wi", headers=auth("alice")).json()[0]["id"] == model["id"]
    assert client.get("/v2/models/?supplier_id=nope", headers=auth("alice")).json() == []
    reply = client.patch(f"/v2/models/{model['id']}/", json={"version_id": "2"}, headers=auth("alice"))
    assert reply.json()["version_id"] == "2"
    reply = client.put(f"/v2/models/{model['id']}/", json={**PIWIND, "run_mode": "V1"}, headers=auth("alice"))
    assert reply.json()["run_mode"] == "V1" and reply.json()["version_id"] == "1"
    assert client.delete(f"/v2/models/{model['id']}/", headers=auth("alice")).status_code == 204
    assert client.get(f"/v2/models/{model['id']}/", headers=auth("alice")).status_code == 404
    # the same triple re-activates the soft-deleted model
    assert _create(client)["id"] == model["id"]


def test_duplicate_and_bad_bodies(client) -> None:
    _create(client)
    reply = client.post("/v2/models/", json=PIWIND, headers=auth("alice"))
    assert reply.status_code == 400 and "exists" in reply.json()["non_field_errors"][0]
    reply = client.post("/v2/models/", json={"supplier_id": "x"}, headers=auth("alice"))
    assert reply.status_code == 422 and "model_id" in reply.json()
    reply = client.post("/v2/models/", json={**PIWIND, "version_id": "9", "run_mode": "V3"}, headers=auth("alice"))
    assert reply.status_code == 422 and "run_mode" in reply.json()


def test_401_403_404(client, add_member) -> None:
    assert client.get("/v2/models/").status_code == 401
    assert client.post("/v2/models/", json=PIWIND).status_code == 401
    assert client.get("/v2/models/1/", headers={"Authorization": "Bearer forged"}).status_code == 403
    assert client.get("/v2/models/999/", headers=auth("alice")).status_code == 404
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    model = _create(client, "alice")
    assert model["groups"] == ["team-a"]  # the creator's groups by default
    # bob cannot see it (404, as the reference hides it) and cannot change it (403)
    assert client.get(f"/v2/models/{model['id']}/", headers=auth("bob")).status_code == 404
    assert client.get("/v2/models/", headers=auth("bob")).json() == []
    assert client.patch(f"/v2/models/{model['id']}/", json={"version_id": "3"}, headers=auth("bob")).status_code == 403
    assert client.delete(f"/v2/models/{model['id']}/", headers=auth("bob")).status_code == 403
    assert client.post(f"/v2/models/{model['id']}/settings/", json={}, headers=auth("bob")).status_code == 403
    # admins see everything
    assert client.get(f"/v2/models/{model['id']}/", headers=auth("root")).status_code == 200
    # naming a group one is not in is refused, field named
    reply = client.post("/v2/models/", json={**PIWIND, "version_id": "7", "groups": ["team-b"]}, headers=auth("alice"))
    assert reply.status_code == 400 and "team-b" in reply.json()["groups"][0]


def test_ungrouped_objects_are_shared(client, add_member) -> None:
    model = _create(client, "carol")  # carol has no groups: the model has none
    add_member("bob", "team-b")
    assert model["groups"] == []
    assert client.get(f"/v2/models/{model['id']}/", headers=auth("bob")).status_code == 200


def test_model_settings(client) -> None:
    model = _create(client)
    url = f"/v2/models/{model['id']}/settings/"
    assert client.get(url, headers=auth("alice")).status_code == 404
    settings = json.loads((require_shared("piwind") / "meta-data" / "model_settings.json").read_text())
    reply = client.post(url, json=settings, headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert client.get(url, headers=auth("alice")).json() == settings
    bad = client.post(url, json={"model_settings": "not an object"}, headers=auth("alice"))
    assert bad.status_code == 400 and bad.json()
    assert client.delete(url, headers=auth("alice")).status_code == 204
    assert client.get(url, headers=auth("bob")).status_code == 404


def test_chunking_scaling_versions(client) -> None:
    model = _create(client)
    url = f"/v2/models/{model['id']}/chunking_configuration/"
    assert client.get(url, headers=auth("alice")).json()["fixed_analysis_chunks"] == 1
    reply = client.post(url, json={"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 10},
                        headers=auth("alice"))
    assert reply.status_code == 200 and reply.json()["dynamic_events_per_analysis"] == 10
    assert client.get(url, headers=auth("alice")).json()["loss_strategy"] == "DYNAMIC_CHUNKS"
    assert client.post(url, json={"fixed_analysis_chunks": 0}, headers=auth("alice")).status_code == 422
    assert client.post(url, json={"bogus": 1}, headers=auth("alice")).status_code == 422
    assert client.get(f"/v2/models/{model['id']}/scaling_configuration/",
                      headers=auth("alice")).json()["scaling_strategy"] == "FIXED_WORKERS"
    versions = client.get(f"/v2/models/{model['id']}/versions/", headers=auth("alice")).json()
    assert versions["ver_platform"] and versions["ver_ods"]
    assert client.get("/v2/models/42/versions/", headers=auth("alice")).status_code == 404


def test_only_admins_choose_the_code_a_model_runs(client) -> None:
    for key, value in (("worker_command", ["sh", "-c", "cat /etc/passwd"]), ("worker_image", "evil:1"),
                       ("env", {"LD_PRELOAD": "/tmp/x.so"})):
        reply = client.post("/v2/models/", json={**PIWIND, "runtime": {key: value}}, headers=auth("alice"))
        assert reply.status_code == 403 and f"runtime.{key}" in reply.json()["runtime"][0]
    model = _create(client, "root", runtime={"model_data_dir": "m", "worker_image": "registry/piwind:1"})
    # others may change the model's files but keep the admin's image; changing it is refused
    reply = client.patch(f"/v2/models/{model['id']}/", headers=auth("alice"),
                         json={"runtime": {"model_data_dir": "n", "worker_image": "registry/piwind:1"}})
    assert reply.status_code == 200 and reply.json()["runtime"]["model_data_dir"] == "n"
    reply = client.patch(f"/v2/models/{model['id']}/", headers=auth("alice"),
                         json={"runtime": {"model_data_dir": "n", "worker_image": "other:2"}})
    assert reply.status_code == 403
    reply = client.patch(f"/v2/models/{model['id']}/", headers=auth("root"),
                         json={"runtime": {"model_data_dir": "n", "worker_image": "other:2"}})
    assert reply.status_code == 200 and reply.json()["runtime"]["worker_image"] == "other:2"
