"""A small client of the Perilflow REST API (OasisPlatform v2 paths), used by the CLI and the demo.

>>> client = PerilflowClient("http://127.0.0.1:8080/perilflow", username="admin", password="...")
>>> model = client.find_or_create_model("Perilflow", "DemoWind", "1.0.0", runtime={...})
>>> analysis = client.create_analysis("my run", portfolio_id, model["id"], settings)
>>> client.action(analysis["id"], "generate_and_run")
>>> client.wait(analysis["id"], on_progress=print)

Every failed request raises :class:`ApiError` with the HTTP status and the server's message
(the field errors the API returns are flattened into one line).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080/perilflow"
TERMINAL = frozenset({"READY", "RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED", "INPUTS_GENERATION_ERROR",
                      "INPUTS_GENERATION_CANCELLED", "INPUTS_GENERATION_NO_KEYS"})
FAILED = frozenset({"RUN_ERROR", "RUN_CANCELLED", "INPUTS_GENERATION_ERROR", "INPUTS_GENERATION_CANCELLED",
                    "INPUTS_GENERATION_NO_KEYS"})
PORTFOLIO_FILES = {"location": "location_file", "account": "accounts_file", "ri_info": "reinsurance_info_file",
                   "ri_scope": "reinsurance_scope_file"}


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:300] or reply.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
        parts = [f"{k}: {'; '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items()
                 if k != "detail"]
        return ", ".join(parts) or str(body.get("detail"))
    return str(body)[:300]


@dataclass
class Progress:
    """One look at a running analysis: its status and its current run's sub-tasks."""

    analysis: dict[str, Any]
    done: int
    total: int
    running: list[str]
    failed: list[str]

    @property
    def status(self) -> str:
        return str(self.analysis["status"])

    def line(self, width: int = 30) -> str:
        """``[#######.......]  12/40 sub-tasks  RUN_STARTED  generate-losses-chunk``."""
        filled = int(width * self.done / self.total) if self.total else 0
        stages = ", ".join(sorted(set(self.running)))[:60] or "-"
        return f"[{'#' * filled}{'.' * (width - filled)}] {self.done:>3}/{self.total:<3} sub-tasks  " \
               f"{self.status:<26} {stages}"


class PerilflowClient:
    """Talks to ``server`` (``.../perilflow``) with a bearer token, logging in when given a password."""

    def __init__(self, server: str | None = None, *, token: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 60) -> None:
        self.server = (server or os.environ.get("PERILFLOW_SERVER") or DEFAULT_SERVER).rstrip("/")
        self._http = httpx.Client(base_url=self.server + "/", timeout=timeout)
        self._token = token or os.environ.get("PERILFLOW_TOKEN")
        self._username = username or os.environ.get("PERILFLOW_USERNAME")
        self._password = password or os.environ.get("PERILFLOW_PASSWORD")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PerilflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def login(self) -> str:
        if not (self._username and self._password):
            raise ApiError("no credentials: give --token (or PERILFLOW_TOKEN), or --username and --password "
                           "(or PERILFLOW_USERNAME / PERILFLOW_PASSWORD)")
        reply = self._send("POST", "access_token/", json={"username": self._username, "password": self._password},
                           auth=False)
        self._token = str(reply.json()["access_token"])
        return self._token

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self._token or self.login()}"
        try:
            reply = self._http.request(method, path.lstrip("/"), headers=headers, **kwargs)
        except httpx.ConnectError:
            raise ApiError(f"cannot reach {self.server}; start the platform with `perilflow platform start` "
                           "or give --server URL") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc}") from None
        if reply.status_code >= 400:
            raise ApiError(f"{method} {path}: {reply.status_code} {_message(reply)}", reply.status_code)
        return reply

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send with the token (renewed once when it expired); the JSON body, or None for 204."""
        try:
            reply = self._send(method, path, **kwargs)
        except ApiError as exc:
            if exc.status != 401 or not (self._username and self._password):
                raise
            self.login()
            reply = self._send(method, path, **kwargs)
        return None if reply.status_code == 204 or not reply.content else reply.json()

    # ------------------------------------------------------------------ resources

    def find_or_create_model(self, supplier_id: str, model_id: str, version_id: str, *,
                             runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The model with this triple (its runtime updated), created when missing."""
        found = self.request("GET", "v2/models/", params={"supplier_id": supplier_id, "model_id": model_id,
                                                           "version_id": version_id})
        if found:
            model = found[0]
            if runtime is not None and model.get("runtime") != dict(runtime):
                model = self.request("PATCH", f"v2/models/{model['id']}/", json={"runtime": dict(runtime)})
            return dict(model)
        return dict(self.request("POST", "v2/models/", json={
            "supplier_id": supplier_id, "model_id": model_id, "version_id": version_id, "data_files": [],
            "runtime": dict(runtime or {})}))

    def upload_portfolio(self, name: str, files: Mapping[str, str | Path], *, reporting_currency: str | None = None,
                         currency_rates: str | Path | None = None) -> dict[str, Any]:
        """Create a portfolio and upload its OED files (keys: location, account, ri_info, ri_scope), and
        optionally the currency its amounts are converted to and the rates (a CSV cur_from,cur_to,roe or
        the conversion JSON)."""
        unknown = set(files) - set(PORTFOLIO_FILES)
        if unknown:
            raise ValueError(f"unknown portfolio file kinds {sorted(unknown)}; use {sorted(PORTFOLIO_FILES)}")
        # checked before anything is created, so a mistake leaves no half-made portfolio behind
        for kind, path in files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: no such file (the {kind} file of portfolio {name!r})")
        if currency_rates is not None and not Path(currency_rates).is_file():
            raise FileNotFoundError(f"{currency_rates}: no such file (the currency rates of portfolio {name!r})")
        if reporting_currency is not None and not re.fullmatch(r"[A-Z]{3}", reporting_currency):
            raise ValueError(f"reporting currency {reporting_currency!r}: give three capital letters (ISO 4217), "
                             "e.g. USD")
        portfolio = self.request("POST", "v2/portfolios/", json={"name": name})
        for kind, path in files.items():
            path = Path(path)
            with path.open("rb") as handle:
                self.request("POST", f"v2/portfolios/{portfolio['id']}/{PORTFOLIO_FILES[kind]}/",
                             files={"file": (path.name, handle, "text/csv")})
        if currency_rates is not None:
            rates = Path(currency_rates)
            self.request("POST", f"v2/portfolios/{portfolio['id']}/currency_conversion_json/",
                         files={"file": (rates.name, rates.read_bytes())})
        if reporting_currency is not None:
            self.request("POST", f"v2/portfolios/{portfolio['id']}/reporting_currency/",
                         json={"reporting_currency": reporting_currency})
        return dict(self.request("GET", f"v2/portfolios/{portfolio['id']}/"))

    def create_analysis(self, name: str, portfolio: int, model: int,
                        settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        analysis = self.request("POST", "v2/analyses/", json={"name": name, "portfolio": portfolio, "model": model})
        if settings is not None:
            self.request("POST", f"v2/analyses/{analysis['id']}/settings/", json=dict(settings))
        return dict(analysis)

    def analysis(self, analysis_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"v2/analyses/{analysis_id}/"))

    def action(self, analysis_id: int, action: str) -> dict[str, Any]:
        """``generate_inputs``, ``run``, ``generate_and_run``, ``cancel``, ``resume``, ..."""
        return dict(self.request("POST", f"v2/analyses/{analysis_id}/{action}/") or {})

    def progress(self, analysis_id: int) -> Progress:
        analysis = self.analysis(analysis_id)
        tasks = self.request("GET", f"v2/analyses/{analysis_id}/sub_task_list/") or []
        done = sum(t["status"] in ("COMPLETED", "CANCELLED", "ERROR") for t in tasks)
        running = [t["slug"].rsplit("-", 1)[0] if t.get("map_index", -1) >= 0 else t["slug"]
                   for t in tasks if t["status"] == "STARTED"]
        failed = [t["slug"] for t in tasks if t["status"] == "ERROR"]
        return Progress(analysis, done, len(tasks), running, failed)

    def wait(self, analysis_id: int, *, timeout: float = 3600, poll: float = 2.0, until: frozenset[str] = TERMINAL,
             on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Poll until the status is in ``until`` (default: any end state); raise after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            progress = self.progress(analysis_id)
            if on_progress is not None:
                on_progress(progress)
            if progress.status in until:
                return progress.analysis
            if time.monotonic() > deadline:
                raise ApiError(f"analysis {analysis_id} still {progress.status} after {timeout:.0f} s; "
                               f"`perilflow analyses status {analysis_id}` shows it")
            time.sleep(poll)

    def download(self, path: str, target: str | Path) -> Path:
        """Stream a file route (``v2/analyses/1/output_file/``) to ``target`` (written then renamed)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        headers = {"Authorization": f"Bearer {self._token or self.login()}"}
        try:
            with self._http.stream("GET", path.lstrip("/"), headers=headers) as reply:
                if reply.status_code >= 400:
                    reply.read()
                    raise ApiError(f"GET {path}: {reply.status_code} {_message(reply)}", reply.status_code)
                with tmp.open("wb") as out:
                    for chunk in reply.iter_bytes():
                        out.write(chunk)
        except httpx.ConnectError:
            raise ApiError(f"cannot reach {self.server}; is the platform running?") from None
        os.replace(tmp, target)
        return target
