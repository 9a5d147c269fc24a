"""``/v2/portfolios/``: CRUD, OED file upload/download/delete, validate, create_analysis."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, UploadFile, status
from sqlalchemy import select

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import (
    CallerDep,
    DbDep,
    SettingsDep,
    api_base,
    get_changeable,
    get_visible,
    resolve_groups,
    visible,
)
from perilflow.plugins.api.schemas import CreateAnalysisIn, PortfolioIn, PortfolioPatch
from perilflow.plugins.db.models import Portfolio, StoredFile

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
        "exposure_status": "NONE", "validation_status": p.validation_status, "exposure_transform_status": "NONE",
        "currency_conversion_json": None, "reporting_currency": None,
    }


@router.get("/", summary="List portfolios (filters: name, name__contains)")
def list_portfolios(request: Request, db: DbDep, caller: CallerDep, name: str | None = None,
                    name__contains: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Portfolio).order_by(Portfolio.id)
    clause = visible(Portfolio, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    if name is not None:
        stmt = stmt.where(Portfolio.name == name)
    if name__contains is not None:
        stmt = stmt.where(Portfolio.name.contains(name__contains, autoescape=True))
    return [portfolio_json(request, p) for p in db.scalars(stmt)]


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
    return _update(request, portfolio_pk, body.model_dump(), db, caller)


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

    @router.get(f"/{{portfolio_pk}}/{name}/", summary=f"Download the {label}", response_model=None)
    def download(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
        stored = getattr(get_visible(db, Portfolio, portfolio_pk, caller, WHAT), column)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no {label}")
        return files.stream(settings, stored.uri, stored.filename, stored.content_type, missing=label)

    @router.post(f"/{{portfolio_pk}}/{name}/", summary=f"Upload the {label} (multipart field 'file'; csv or parquet)")
    def upload(request: Request, portfolio_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
               settings: SettingsDep) -> dict[str, Any]:
        p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
        if not (file.filename or "").lower().endswith(OED_SUFFIXES):
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                {"file": [f"{file.filename!r}: OED files must be .csv or .parquet"]})
        uri, filename, size = files.store_upload(settings, file, f"portfolios/{p.id}", name)
        old = getattr(p, column)
        stored = StoredFile(uri=uri, filename=filename, size=size, creator=caller.name,
                            content_type=file.content_type or "application/octet-stream")
        db.add(stored)
        setattr(p, column, stored)
        p.validation_status = "NONE"
        p.validation_errors = None
        if old is not None:
            db.delete(old)
            files.remove(settings, old.uri)
        db.flush()
        return {"created": stored.created, "file": stored.filename, "filename": stored.filename,
                "stored": uri.rsplit("/", 1)[-1], "size": size}

    @router.delete(f"/{{portfolio_pk}}/{name}/", status_code=status.HTTP_204_NO_CONTENT,
                   summary=f"Remove the {label}")
    def remove(portfolio_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
        p = get_changeable(db, Portfolio, portfolio_pk, caller, WHAT)
        stored = getattr(p, column)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"portfolio {portfolio_pk} has no {label}")
        setattr(p, column, None)
        db.delete(stored)
        files.remove(settings, stored.uri)
        p.validation_status = "NONE"
        return Response(status_code=status.HTTP_204_NO_CONTENT)


for _name, (_column, _) in FILE_KINDS.items():
    _file_routes(_name, _column)


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
