"""``/v2/portfolios/``: CRUD, OED file upload/download/delete, validate, create_analysis, storage_links,
exposure_run (the kernel's deterministic run, in the request for small portfolios) and its errors_file,
currency_conversion_json and reporting_currency (input generation converts amounts with them)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Form, HTTPException, Request, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import (
    Caller,
    CallerDep,
    DbDep,
    SettingsDep,
    api_base,
    get_changeable,
    get_visible,
    resolve_groups,
    visible,
)
from perilflow.plugins.api.pagination import LimitQuery, OffsetQuery, paginate
from perilflow.plugins.api.schemas import CreateAnalysisIn, PortfolioIn, PortfolioPatch
from perilflow.plugins.db.models import Analysis, DataFile, Portfolio, StoredFile
from perilflow.plugins.settings import ApiSettings

router = APIRouter(prefix="/v2/portfolios", tags=["portfolios"])
WHAT = "portfolio"
#: URL name -> (column, OED kind)
FILE_KINDS = {
    "location_file": ("location_file", "location"),
    "accounts_file": ("accounts_file", "account"),
    "reinsurance_info_file": ("reinsurance_info_file", "ri_info"),
    "reinsurance_scope_file": ("reinsurance_scope_file", "ri_scope"),
}
OED_SUFFIXES = (".csv", ".parquet", ".pq")


def _file_json(base: str, name: str, stored: StoredFile | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {"uri": f"{base}/{name}/", "name": stored.filename, "stored": stored.uri.rsplit("/", 1)[-1],
            "size": stored.size}


def portfolio_json(request: Request, p: Portfolio) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/portfolios/{p.id}"
    return {
        "id": p.id, "name": p.name, "created": p.created, "modified": p.modified,
        "groups": sorted(g.name for g in p.groups),
        **{name: _file_json(base, name, getattr(p, column)) for name, (column, _) in FILE_KINDS.items()},
        "storage_links": f"{base}/storage_links/",
        "exposure_status": p.exposure_status, "validation_status": p.validation_status,
        "exposure_transform_status": p.exposure_transform_status,
        "currency_conversion_json": f"{base}/currency_conversion_json/" if p.currency_conversion else None,
        "reporting_currency": p.reporting_currency,
    }


@router.get("/", summary="List portfolios (filters: name, name__contains; limit/offset pagination when limit is given)",
            response_model=None)
def list_portfolios(request: Request, db: DbDep, caller: CallerDep, name: str | None = None,
                    name__contains: str | None = None, limit: LimitQuery = None, offset: OffsetQuery = 0
                    ) -> list[dict[str, Any]] | dict[str, Any]:
    stmt = select(Portfolio).order_by(Portfolio.id)
    clause = visible(Portfolio, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    if name is not None:
        stmt = stmt.where(Portfolio.name == name)
    if name__contains is not None:
        stmt = stmt.where(Portfolio.name.contains(name__contains, autoescape=True))
    return paginate(request, db, stmt, limit, offset, lambda p: portfolio_json(request, p))


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create a portfolio")
def create_portfolio(request: Request, body: PortfolioIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    p = Portfolio(name=body.name, creator=caller.name, groups=resolve_groups(db, body.groups, caller))
    db.add(p)
    db.flush()
    return portfolio_json(request, p)


@router.get("/{portfolio_pk}/", summary="One portfolio")
def get_portfolio(request: Request, portfolio_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return portfolio_json(request, get_visible(db, Portfolio, portfolio_pk, caller, WHAT))


def _update(request: Request, portfolio_pk: int, fields: dict[str, Any], db: DbDep, caller: CallerDep
            ) -> dict[str, Any]:
    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    if fields.get("name") is not None:
        p.name = fields["name"]
    if "groups" in fields:
        p.groups = resolve_groups(db, fields["groups"], caller)
    db.flush()
    return portfolio_json(request, p)


@router.put("/{portfolio_pk}/", summary="Replace a portfolio's fields")
def put_portfolio(request: Request, portfolio_pk: int, body: PortfolioIn, db: DbDep, caller: CallerDep
                  ) -> dict[str, Any]:
    # a PUT without groups keeps the object's own (as the reference, DRF): they became the caller's, so an
    # admin's PUT made the object visible to everyone
    keep = set() if "groups" in body.model_fields_set else {"groups"}
    return _update(request, portfolio_pk, body.model_dump(exclude=keep), db, caller)


@router.patch("/{portfolio_pk}/", summary="Change some of a portfolio's fields")
def patch_portfolio(request: Request, portfolio_pk: int, body: PortfolioPatch, db: DbDep, caller: CallerDep
                    ) -> dict[str, Any]:
    return _update(request, portfolio_pk, body.model_dump(exclude_unset=True), db, caller)


@router.delete("/{portfolio_pk}/", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a portfolio")
def delete_portfolio(portfolio_pk: int, db: DbDep, caller: CallerDep) -> Response:
    db.delete(get_changeable(db, Portfolio, portfolio_pk, caller, WHAT))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _file_routes(name: str, column: str) -> None:
    label = name.replace("_", " ")

    @router.get(f"/{{portfolio_pk}}/{name}/", summary=f"Download the {label} (?file_format=csv|parquet converts)",
                response_model=None)
    def download(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                 file_format: Literal["csv", "parquet"] | None = None) -> Response:
        stored = getattr(get_visible(db, Portfolio, portfolio_pk, caller, WHAT), column)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no {label}")
        if file_format is not None and (file_format == "parquet") != files.is_parquet(stored.filename):
            if not files.storage_path(settings, stored.uri).exists():
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {label} is no longer in storage ({stored.uri})")
            return files.stream_converted(settings, stored.uri, stored.filename, file_format)
        return files.stream(settings, stored.uri, stored.filename, stored.content_type, missing=label)

    @router.post(f"/{{portfolio_pk}}/{name}/", summary=f"Upload the {label} (multipart field 'file'; csv or parquet)")
    def upload(request: Request, portfolio_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
               settings: SettingsDep) -> dict[str, Any]:
        p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
        if not (file.filename or "").lower().endswith(OED_SUFFIXES):
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                {"file": [f"{file.filename!r}: OED files must be .csv or .parquet"]})
        uri, filename, size = files.store_upload(settings, file, f"portfolios/{p.id}", name)
        files.remove_after_rollback(db, uri)
        stored = _replace_file(db, p, column, uri, filename, size, caller,
                               file.content_type or "application/octet-stream")
        return {"created": stored.created, "file": stored.filename, "filename": stored.filename,
                "stored": uri.rsplit("/", 1)[-1], "size": size}

    @router.delete(f"/{{portfolio_pk}}/{name}/", status_code=status.HTTP_204_NO_CONTENT,
                   summary=f"Remove the {label}")
    def remove(portfolio_pk: int, db: DbDep, caller: CallerDep) -> Response:
        p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
        stored = getattr(p, column)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no {label}")
        setattr(p, column, None)
        db.delete(stored)
        files.remove_after_commit(db, stored.uri)
        p.validation_status = "NONE"
        return Response(status_code=status.HTTP_204_NO_CONTENT)


def _replace_file(db: Session, p: Portfolio, column: str, uri: str, filename: str, size: int, caller: Caller,
                  content_type: str) -> StoredFile:
    """Point ``p.column`` at a new stored file; the old one (row and object) goes; validation starts over."""
    old = getattr(p, column)
    stored = StoredFile(uri=uri, filename=filename, size=size, creator=caller.name, content_type=content_type)
    db.add(stored)
    setattr(p, column, stored)
    p.validation_status = "NONE"
    p.validation_errors = None
    if old is not None:
        db.delete(old)
        files.remove_after_commit(db, old.uri)
    db.flush()
    return stored


for _name, (_column, _) in FILE_KINDS.items():
    _file_routes(_name, _column)


# ----------------------------------------------------------------------------- currency


class ReportingCurrencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reporting_currency: str = Field(description="ISO 4217 code, e.g. USD: input generation converts every amount "
                                                "to it with the portfolio's currency_conversion_json")


@router.get("/{portfolio_pk}/currency_conversion_json/", summary="The rates of exchange input generation uses")
def get_currency_conversion(portfolio_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    p = get_visible(db, Portfolio, portfolio_pk, caller, WHAT)
    if not p.currency_conversion:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no currency conversion; "
                            "POST a CSV of rates (cur_from,cur_to,roe) or the JSON to currency_conversion_json/")
    return p.currency_conversion


@router.post("/{portfolio_pk}/currency_conversion_json/",
             summary="Set the rates of exchange (multipart field 'file': a CSV cur_from,cur_to,roe, converted to "
                     "JSON, or the DictBasedCurrencyRates JSON)")
def post_currency_conversion(portfolio_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
                             settings: SettingsDep) -> dict[str, Any]:
    import json

    from perilflow.kernel.oed.currency import check_conversion, rates_from_csv

    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    data = files.read_small_upload(settings, file)
    try:
        text = data.decode("utf-8-sig")
        if (file.filename or "").lower().endswith(".json") or text.lstrip().startswith("{"):
            try:
                conversion = check_conversion(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc}); upload the JSON object or a CSV cur_from,cur_to,roe"
                                 ) from None
        else:
            conversion = rates_from_csv(text)
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"file": [
            f"{file.filename!r} is not UTF-8 text; upload a CSV (cur_from,cur_to,roe) or JSON"]}) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"file": [f"{file.filename!r}: {exc}"]}) from None
    p.currency_conversion = conversion
    db.flush()
    return conversion


@router.delete("/{portfolio_pk}/currency_conversion_json/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove the rates of exchange")
def delete_currency_conversion(portfolio_pk: int, db: DbDep, caller: CallerDep) -> Response:
    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    if not p.currency_conversion:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no currency conversion")
    p.currency_conversion = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{portfolio_pk}/reporting_currency/", summary="The currency input generation converts amounts to")
def get_reporting_currency(portfolio_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    p = get_visible(db, Portfolio, portfolio_pk, caller, WHAT)
    if not p.reporting_currency:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no reporting currency; "
                            "POST {\"reporting_currency\": \"USD\"} to reporting_currency/")
    return {"reporting_currency": p.reporting_currency}


@router.post("/{portfolio_pk}/reporting_currency/", summary="Set the reporting currency ({reporting_currency})")
def post_reporting_currency(portfolio_pk: int, body: ReportingCurrencyIn, db: DbDep, caller: CallerDep
                            ) -> dict[str, Any]:
    from perilflow.kernel.oed.currency import check_reporting_currency

    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    try:
        p.reporting_currency = check_reporting_currency(body.reporting_currency)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"reporting_currency": [str(exc)]}) from None
    db.flush()
    return {"reporting_currency": p.reporting_currency}


@router.delete("/{portfolio_pk}/reporting_currency/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove the reporting currency (amounts stay in their own currencies)")
def delete_reporting_currency(portfolio_pk: int, db: DbDep, caller: CallerDep) -> Response:
    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    if not p.reporting_currency:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no reporting currency")
    p.reporting_currency = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ----------------------------------------------------------------------------- storage links


def _check_key_owner(db: Session, caller: Caller, key: str, field: str) -> None:
    """A key inside another object's storage folder must belong to an object the caller may see (400 otherwise)."""
    import re

    from perilflow.plugins.api.auth import visible

    owners = ((r"portfolios/(\d+)/", Portfolio), (r"data_files/(\d+)/", DataFile), (r"analysis-(\d+)_", Analysis))
    for pattern, entity in owners:
        match = re.match(pattern, key)
        if match:
            stmt = select(entity.id).where(entity.id == int(match.group(1)))
            clause = visible(entity, caller)
            if db.scalar(stmt if clause is None else stmt.where(clause)) is None:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
                    f"file {key!r} belongs to an object of a group you are not in"]})


@router.get("/{portfolio_pk}/storage_links/", summary="Object keys of the portfolio's files in storage")
def get_storage_links(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> dict[str, Any]:
    p = get_visible(db, Portfolio, portfolio_pk, caller, WHAT)
    return {name: files.storage_key(settings, getattr(p, column).uri) if getattr(p, column) else None
            for name, (column, _) in FILE_KINDS.items()}


@router.post("/{portfolio_pk}/storage_links/",
             summary="Attach files already in storage by object key ({location_file: key, ...}); they are copied")
def post_storage_links(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                       body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    unknown = sorted(set(body) - set(FILE_KINDS))
    if unknown:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {name: [
            f"not a portfolio file; use {', '.join(FILE_KINDS)}"] for name in unknown})
    wanted = {name: key for name, key in body.items() if key is not None}
    if not wanted:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"non_field_errors": [
            f"at least one file field reference required from [{', '.join(FILE_KINDS)}]"]})
    errors: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    for name, key in wanted.items():
        try:
            sources[name] = files.resolve_key(settings, key, name)
            if not str(key).lower().endswith(OED_SUFFIXES):
                raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                    {name: [f"{key!r}: OED files must be .csv or .parquet"]})
            _check_key_owner(db, caller, str(key).strip(), name)
        except HTTPException as exc:
            errors.update(exc.detail if isinstance(exc.detail, dict) else {name: [str(exc.detail)]})
    if errors:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, errors)
    for name, source in sources.items():
        uri, filename, size = files.copy_in_storage(settings, source, f"portfolios/{p.id}", name)
        files.remove_after_rollback(db, uri)
        content_type = "application/octet-stream" if files.is_parquet(filename) else "text/csv"
        _replace_file(db, p, FILE_KINDS[name][0], uri, filename, size, caller, content_type)
    return get_storage_links(portfolio_pk, db, caller, settings)


# ----------------------------------------------------------------------------- exposure run

#: locations above this are refused by exposure_run/: it runs in the API's request, not on a worker
EXPOSURE_RUN_MAX_LOCATIONS = 20_000


class ExposureRunParams(BaseModel):
    """The reference's ``oasislmf exposure run`` parameters that Perilflow's deterministic run supports."""

    model_config = ConfigDict(extra="forbid")

    loss_factor: list[float] | float = Field(default=[1.0], description="ground-up loss as a fraction of TIV")
    model_perils_covered: list[str] | str = Field(default=["WTC"], description="perils or peril groups covered")
    kernel_alloc_rule_il: Literal[2] = Field(default=2, description="only rule 2 (the reference's default)")
    kernel_alloc_rule_ri: Literal[3] = Field(default=3, description="only rule 3 (the reference's default)")
    fmpy_low_memory: bool = False


class ExposureRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: ExposureRunParams = Field(default_factory=ExposureRunParams)


def _store_text(settings: ApiSettings, db: Session, p: Portfolio, column: str, local: Path, name: str,
                caller: Caller, content_type: str) -> StoredFile:
    uri = f"{settings.storage_url}/portfolios/{p.id}/{name}"
    target = files.storage_path(settings, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp"
    with local.open("rb") as src, tmp.open("wb") as out:
        while piece := src.read(files.CHUNK):
            out.write(piece)
    tmp.rename(target)
    old = getattr(p, column)
    stored = StoredFile(uri=uri, filename=name, size=local.stat().st_size, creator=caller.name,
                        content_type=content_type)
    db.add(stored)
    setattr(p, column, stored)
    if old is not None:
        db.delete(old)
        if old.uri != uri:
            files.remove_after_commit(db, old.uri)
    return stored


@router.post("/{portfolio_pk}/exposure_run/",
             summary="Run the deterministic exposure run (loss factor x TIV through the financial terms) now; "
                     f"up to {EXPOSURE_RUN_MAX_LOCATIONS} locations")
def exposure_run(request: Request, portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                 body: Annotated[ExposureRunIn | None, Body()] = None) -> dict[str, Any]:
    """Runs in the request: a small portfolio takes seconds, and the kernel needs no model data.
    A larger one belongs on a worker (a DAG), so it is refused (400) rather than tying up the api-server."""
    from types import SimpleNamespace

    from perilflow.kernel.inputs.exposure_run import exposure_run as run
    from perilflow.operators.storage import count_location_rows

    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    params = (body or ExposureRunIn()).params
    if p.location_file is None or p.accounts_file is None:
        p.exposure_status = "INSUFFICIENT_DATA"
        db.commit()
        missing = [n for n, f in (("location_file", p.location_file), ("accounts_file", p.accounts_file)) if f is None]
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {n: [f"upload the {n.replace('_', ' ')} first"]
                                                          for n in missing})
    cfg = SimpleNamespace(storage_conn_id=settings.storage_conn_id)
    try:
        rows = count_location_rows(cfg, p.location_file.uri)  # type: ignore[arg-type]
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"location_file": [str(exc)]}) from None
    if rows > EXPOSURE_RUN_MAX_LOCATIONS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"location_file": [
            f"{rows} locations; exposure_run/ runs in the API process and takes up to "
            f"{EXPOSURE_RUN_MAX_LOCATIONS}: run `perilflow exposure-run` on a worker for larger portfolios"]})
    factors = params.loss_factor if isinstance(params.loss_factor, list) else [params.loss_factor]
    perils = params.model_perils_covered
    kinds = {"location": p.location_file, "account": p.accounts_file, "ri_info": p.reinsurance_info_file,
             "ri_scope": p.reinsurance_scope_file}
    p.exposure_status = "STARTED"
    with tempfile.TemporaryDirectory(prefix="perilflow-exposure-") as tmp:
        from contextlib import ExitStack

        with ExitStack() as stack:
            local = {k: stack.enter_context(files.local_copy(settings, f.uri, f.filename)) if f is not None else None
                     for k, f in kinds.items()}
            try:
                written = run(local["location"], local["account"], Path(tmp) / "out", local["ri_info"],
                              local["ri_scope"], peril=perils, loss_factors=factors)
            except ValueError as exc:  # OedValidationError is a ValueError; both are the user's to fix
                message = str(exc)
                for k, f in kinds.items():
                    if f is not None and local[k] is not None:
                        message = message.replace(str(local[k]), f.filename)
                errors = Path(tmp) / "errors.txt"
                errors.write_text(message + "\n")
                _store_text(settings, db, p, "run_errors_file", errors, f"portfolio_{p.id}_errors.txt", caller,
                            "text/plain")
                p.exposure_status = "ERROR"
                db.commit()  # keep the outcome although the reply is an error
                raise HTTPException(status.HTTP_400_BAD_REQUEST, {"exposure_status": "ERROR", "params": [message],
                                                                  "errors_file": f"{api_base(request)}/v2/portfolios/"
                                                                                 f"{p.id}/errors_file/"}) from None
        _store_text(settings, db, p, "exposure_run_file", written["loc_summary"],
                    f"portfolio_{p.id}_exposure_run.csv", caller, "text/csv")
    p.exposure_status = "RUN_COMPLETED"
    db.flush()
    return {"message": "run completed", "exposure_status": p.exposure_status, "locations": rows,
            "file": f"{api_base(request)}/v2/portfolios/{p.id}/exposure_run/"}


@router.get("/{portfolio_pk}/exposure_run/", summary="The last exposure run's losses per location (CSV)",
            response_model=None)
def get_exposure_run(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    p = get_visible(db, Portfolio, portfolio_pk, caller, WHAT)
    stored = p.exposure_run_file
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no exposure run result; "
                            "POST exposure_run/ first")
    return files.stream(settings, stored.uri, stored.filename, "text/csv", missing="exposure run result")


# ----------------------------------------------------------------------------- exposure transform

#: the reference's file_type values -> the portfolio file the result becomes
TRANSFORM_FILE_TYPES = {"location": "location_file", "accounts": "accounts_file", "ri_info": "reinsurance_info_file",
                        "ri_scope": "reinsurance_scope_file"}
#: rows above this are refused by exposure_transform/: it runs in the API's request
EXPOSURE_TRANSFORM_MAX_ROWS = 20_000


def _mapping_problem(message: str) -> bool:
    return message.startswith(("the mapping file", "null_values", "types", "transform.", "transform:", "none of"))


@router.post("/{portfolio_pk}/exposure_transform/",
             summary="Transform an exposure file with a mapping (e.g. AIR -> OED; ods-tools' transformation) into "
                     f"the portfolio's file of file_type, then validate it; up to {EXPOSURE_TRANSFORM_MAX_ROWS} rows")
def exposure_transform(request: Request, portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                       file_type: Annotated[str, Form(description="location, accounts, ri_info or ri_scope")],
                       mapping_file: UploadFile, transform_file: UploadFile) -> dict[str, Any]:
    """Runs in the request, as exposure_run/: the reference queues it on a worker."""
    from fastapi import UploadFile as Upload

    from perilflow.kernel.oed.transform import transform_exposure

    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    if file_type not in TRANSFORM_FILE_TYPES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"file_type": [
            f"{file_type!r} is not a file type; use one of {', '.join(TRANSFORM_FILE_TYPES)}"]})
    column = TRANSFORM_FILE_TYPES[file_type]
    with tempfile.TemporaryDirectory(prefix="perilflow-transform-") as tmp:
        work = Path(tmp)
        (work / "mapping.yaml").write_bytes(files.read_small_upload(settings, mapping_file))
        with (work / "input.csv").open("wb") as local:
            files.copy_limited(settings, transform_file.file, local, settings.max_upload_bytes)
        with (work / "input.csv").open("rb") as counted:
            rows = max(sum(1 for _ in counted) - 1, 0)
        if rows > EXPOSURE_TRANSFORM_MAX_ROWS:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {"transform_file": [
                f"{rows} rows; exposure_transform/ runs in the API process and takes up to "
                f"{EXPOSURE_TRANSFORM_MAX_ROWS}: transform larger files with ods-tools and upload the result"]})
        p.exposure_transform_status = "STARTED"
        try:
            output = transform_exposure(work / "input.csv", work / "mapping.yaml", work / "output.csv")
        except ValueError as exc:
            message = str(exc)
            errors = work / "errors.txt"
            errors.write_text(message + "\n")
            _store_text(settings, db, p, "run_errors_file", errors, f"portfolio_{p.id}_errors.txt", caller,
                        "text/plain")
            p.exposure_transform_status = "ERROR"
            db.commit()  # keep the outcome although the reply is an error
            field = "mapping_file" if _mapping_problem(message) else "transform_file"
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {
                "exposure_transform_status": "ERROR", field: [message],
                "errors_file": f"{api_base(request)}/v2/portfolios/{p.id}/errors_file/"}) from None
        stem = Path(transform_file.filename or "exposure").stem or "exposure"
        with output.open("rb") as handle:
            upload = Upload(file=handle, filename=f"{stem}-transformed.csv")
            uri, filename, size = files.store_upload(settings, upload, f"portfolios/{p.id}", column)
    files.remove_after_rollback(db, uri)
    stored = _replace_file(db, p, column, uri, filename, size, caller, "text/csv")
    p.exposure_transform_status = "RUN_COMPLETED"
    present = {kind: (getattr(p, c).uri, getattr(p, c).filename)
               for c, kind in FILE_KINDS.values() if getattr(p, c) is not None}
    if "location" in present:  # validated as the validate/ action does; without locations there is nothing to check
        problems = files.validate_oed(settings, present)
        p.validation_errors = problems
        p.validation_status = "ERROR" if any(x["fatal"] for x in problems) else "RUN_COMPLETED"
    db.flush()
    base = f"{api_base(request)}/v2/portfolios/{p.id}"
    return {"exposure_transform_status": p.exposure_transform_status, "file_type": file_type, "rows": rows,
            column: _file_json(base, column, stored), "validation_status": p.validation_status,
            "problems": p.validation_errors or []}


@router.get("/{portfolio_pk}/errors_file/", summary="The errors of the last failed exposure run or transform",
            response_model=None)
def errors_file(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    p = get_visible(db, Portfolio, portfolio_pk, caller, WHAT)
    stored = p.run_errors_file
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no errors file")
    return files.stream(settings, stored.uri, stored.filename, "text/plain", missing="errors file")


def _validation_json(p: Portfolio) -> dict[str, Any]:
    return {"validation_status": p.validation_status,
            **{f"{name}_validated": getattr(p, column) is not None and p.validation_status == "RUN_COMPLETED"
               for name, (column, _) in FILE_KINDS.items()},
            "problems": p.validation_errors or []}


@router.get("/{portfolio_pk}/validate/", summary="The last validation's status and problems")
def get_validation(portfolio_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return _validation_json(get_visible(db, Portfolio, portfolio_pk, caller, WHAT))


@router.post("/{portfolio_pk}/validate/",
             summary="Check the OED files (400 listing each problem's file, row, column and fix)")
def validate(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> dict[str, Any]:
    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    present = {kind: (getattr(p, column).uri, getattr(p, column).filename)
               for column, kind in FILE_KINDS.values() if getattr(p, column) is not None}
    if "location" not in present:
        p.validation_status = "INSUFFICIENT_DATA"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"location_file": ["upload a location file first"]})
    problems = files.validate_oed(settings, present)
    p.validation_errors = problems
    fatal = [x for x in problems if x["fatal"]]
    p.validation_status = "ERROR" if fatal else "RUN_COMPLETED"
    db.commit()  # keep the outcome even though the reply is an error
    if fatal:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"validation_status": "ERROR", "problems": problems})
    return _validation_json(p)


@router.post("/{portfolio_pk}/create_analysis/", status_code=status.HTTP_201_CREATED,
             summary="Create an analysis of this portfolio and start its input generation")
def create_analysis(request: Request, portfolio_pk: int, body: CreateAnalysisIn, db: DbDep, caller: CallerDep,
                    settings: SettingsDep) -> dict[str, Any]:
    from perilflow.plugins.api.routes import analyses

    p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
    analysis = analyses.new_analysis(db, caller, settings, name=body.name, portfolio=p, model_pk=body.model)
    db.flush()
    analyses.start(request, db, caller, analysis, "generate_inputs")
    return analyses.analysis_json(request, analysis, db)
