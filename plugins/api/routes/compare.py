"""``POST /v2/analyses/compare/`` and ``POST /v2/analyses/combine/``: evaluate and merge completed analyses.

* ``compare/`` takes ``{"analyses": [ids...], "return_periods": [...]}`` (two or more
  RUN_COMPLETED analyses, the first is the baseline) and answers the comparison of
  :func:`perilflow.compare.compare`: JSON, or ``?format=csv`` / ``?format=html`` (a
  self-contained page with the overlaid EP curves as inline SVG).
* ``combine/`` takes the reference's ``{"analysis_ids": [...], "config": {}, "name": ...}`` and
  creates a new RUN_COMPLETED analysis (on the first analysis's portfolio and model) whose
  output tarball holds the ORD files of all of them, summary sets renumbered
  (:func:`perilflow.compare.merge_outputs`, ``output/combine_map.csv``).

This router is included before the analyses router so ``compare`` and ``combine`` are never
read as an analysis id.
"""

from __future__ import annotations

import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import Caller, CallerDep, DbDep, SettingsDep, get_visible, may_change
from perilflow.plugins.db.models import Analysis
from perilflow.plugins.settings import ApiSettings

router = APIRouter(prefix="/v2/analyses", tags=["analyses"])
COMPLETED = "RUN_COMPLETED"


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analyses: list[int] = Field(min_length=2, description="two or more RUN_COMPLETED analyses; the first is the "
                                                          "baseline")
    return_periods: list[float] = Field(default_factory=lambda: [10, 50, 100, 250, 500, 1000], min_length=1,
                                        description="return periods (years) of the OEP/AEP losses compared")


class CombineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analysis_ids: list[int] = Field(min_length=2)
    config: dict[str, Any]
    name: str | None = Field(default=None, min_length=1, max_length=255)


def _completed(request: Request, db: Session, settings: ApiSettings, ids: list[int], caller: Caller,
               field: str) -> list[Analysis]:
    """The analyses, visible to the caller, each RUN_COMPLETED with an output file (else 400 naming it)."""
    from perilflow.plugins.api.routes.analyses import sync

    if len(set(ids)) != len(ids):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [f"{ids} names an analysis twice"]})
    found = []
    for pk in ids:
        try:
            analysis = get_visible(db, Analysis, pk, caller, "analysis")
        except HTTPException:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [f"analysis {pk} not found"]}) from None
        sync(db, settings, request.app.state.perilflow_gateway, analysis)
        if analysis.status != COMPLETED or not analysis.output_file:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
                f"analysis {pk} is {analysis.status}; only {COMPLETED} analyses with outputs can be used: run it "
                "first"]})
        found.append(analysis)
    return found


@contextmanager
def _outputs(settings: ApiSettings, analyses: list[Analysis]) -> Iterator[list[Path]]:
    """Each analysis's output tarball extracted (members checked) into a temporary folder."""
    from perilflow.kernel.storage import StorageError, extract_tar

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perilflow-compare-")))
        folders = []
        for a in analyses:
            if not files.storage_path(settings, a.output_file).exists():
                raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analyses": [
                    f"analysis {a.id}'s output file is no longer in storage ({a.output_file}); run it again"]})
            local = stack.enter_context(files.local_copy(settings, a.output_file, f"analysis-{a.id}.tar.gz"))
            try:
                folders.append(extract_tar(local, tmp / str(a.id)))
            except StorageError as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analyses": [f"analysis {a.id}: {exc}"]}) from None
        yield folders


@router.post("/compare/", summary="Compare two or more RUN_COMPLETED analyses: AAL and OEP/AEP per perspective "
                                  "and summary set, differences to the first (?format=json|csv|html)",
             response_model=None)
def compare_analyses(request: Request, body: CompareIn, db: DbDep, caller: CallerDep, settings: SettingsDep,
                     format: Annotated[Literal["json", "csv", "html"], Query()] = "json") -> Any:
    from perilflow.compare import compare, to_csv, to_html, to_json

    analyses = _completed(request, db, settings, body.analyses, caller, "analyses")
    labels = [f"{a.id}: {a.name}" for a in analyses]
    with _outputs(settings, analyses) as folders:
        try:
            comparison = compare(folders, labels, body.return_periods)
        except (ValueError, FileNotFoundError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analyses": [str(exc)]}) from None
    if format == "csv":
        return Response(to_csv(comparison), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="comparison.csv"'})
    if format == "html":
        return Response(to_html(comparison), media_type="text/html")
    return to_json(comparison, [{"id": a.id, "name": a.name, "label": lab} for a, lab in zip(analyses, labels,
                                                                                              strict=True)])


@router.post("/combine/", status_code=status.HTTP_201_CREATED,
             summary="Merge the ORD outputs of RUN_COMPLETED analyses into a new RUN_COMPLETED analysis")
def combine_analyses(request: Request, body: CombineIn, db: DbDep, caller: CallerDep, settings: SettingsDep
                     ) -> dict[str, Any]:
    from perilflow.compare import merge_outputs
    from perilflow.plugins.api.routes.analyses import analysis_json

    if body.config:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"config": [
            f"combine options {sorted(body.config)} are not supported; send \"config\": {{}} (outputs are merged "
            "with their summary sets renumbered)"]})
    analyses = _completed(request, db, settings, body.analysis_ids, caller, "analysis_ids")
    first = analyses[0]
    if not may_change(first.portfolio, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of portfolio {first.portfolio_id}'s "
                            "groups (the combined analysis belongs to it)")
    now = datetime.now(UTC)
    combined = Analysis(name=body.name or f"combine of {', '.join(str(a.id) for a in analyses)}",
                        portfolio=first.portfolio, model=first.model, creator=caller.name, status=COMPLETED,
                        priority=first.priority, run_mode=first.run_mode, task_started=now, task_finished=now,
                        run_uuid=uuid.uuid4().hex[:16])
    db.add(combined)
    db.flush()
    uri = f"{settings.storage_url}/analysis-{combined.id}_combine-{combined.run_uuid}/output.tar.gz"
    with _outputs(settings, analyses) as folders, tempfile.TemporaryDirectory(prefix="perilflow-combine-") as tmp:
        try:
            merge_outputs(folders, Path(tmp) / "output")
        except FileNotFoundError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analysis_ids": [str(exc)]}) from None
        archive = Path(tmp) / "output.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(Path(tmp) / "output", arcname="output")
        _upload(settings, archive, uri)
    combined.output_file = uri
    db.flush()
    return analysis_json(request, combined, db, [])


def _upload(settings: ApiSettings, local: Path, uri: str) -> None:
    """Copy ``local`` to ``uri`` in storage under a temporary name, then rename it into place."""
    import shutil

    target = files.storage_path(settings, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    with local.open("rb") as src, tmp.open("wb") as out:
        shutil.copyfileobj(src, out, files.CHUNK)
    tmp.rename(target)
