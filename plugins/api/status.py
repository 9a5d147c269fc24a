"""OasisPlatform's analysis states, the actions allowed from each, and Airflow -> Oasis status mapping."""

from __future__ import annotations

from enum import StrEnum


class AnalysisStatus(StrEnum):
    NEW = "NEW"
    INPUTS_GENERATION_QUEUED = "INPUTS_GENERATION_QUEUED"
    INPUTS_GENERATION_STARTED = "INPUTS_GENERATION_STARTED"
    INPUTS_GENERATION_ERROR = "INPUTS_GENERATION_ERROR"
    INPUTS_GENERATION_NO_KEYS = "INPUTS_GENERATION_NO_KEYS"
    INPUTS_GENERATION_CANCELLED = "INPUTS_GENERATION_CANCELLED"
    READY = "READY"
    RUN_QUEUED = "RUN_QUEUED"
    RUN_STARTED = "RUN_STARTED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_CANCELLED = "RUN_CANCELLED"
    RUN_ERROR = "RUN_ERROR"


S = AnalysisStatus
GENERATE_FROM = frozenset({S.NEW, S.INPUTS_GENERATION_ERROR, S.INPUTS_GENERATION_NO_KEYS,
                           S.INPUTS_GENERATION_CANCELLED, S.READY, S.RUN_COMPLETED, S.RUN_CANCELLED, S.RUN_ERROR})
RUN_FROM = frozenset({S.READY, S.RUN_COMPLETED, S.RUN_ERROR, S.RUN_CANCELLED})
INPUTS_ACTIVE = frozenset({S.INPUTS_GENERATION_QUEUED, S.INPUTS_GENERATION_STARTED})
RUN_ACTIVE = frozenset({S.RUN_QUEUED, S.RUN_STARTED})
ACTIVE = INPUTS_ACTIVE | RUN_ACTIVE

#: action -> states it may start from (OasisPlatform analyses/models.py)
ALLOWED_FROM: dict[str, frozenset[AnalysisStatus]] = {
    "generate_inputs": GENERATE_FROM,
    "generate_and_run": GENERATE_FROM,
    "run": RUN_FROM,
    "cancel": ACTIVE,
    "cancel_generate_inputs": INPUTS_ACTIVE,
    "cancel_analysis_run": RUN_ACTIVE,
}


def check_transition(action: str, status: str) -> str | None:
    """None when ``action`` is allowed from ``status``, else the message for the 409 reply."""
    allowed = ALLOWED_FROM[action]
    if status in allowed:
        return None
    return (f"analysis status is {status}; {action} is allowed only from "
            f"{', '.join(sorted(s.value for s in allowed))}")


#: Airflow task-instance state -> OasisPlatform sub-task status (ARCHITECTURE.md, "Status mapping")
SUB_TASK_STATUS: dict[str | None, str] = {
    None: "PENDING", "none": "PENDING", "scheduled": "PENDING",
    "queued": "QUEUED", "up_for_retry": "QUEUED", "up_for_reschedule": "QUEUED", "deferred": "QUEUED",
    "restarting": "QUEUED", "awaiting_input": "QUEUED",
    "running": "STARTED",
    "success": "COMPLETED",
    "failed": "ERROR",
    "skipped": "CANCELLED", "upstream_failed": "CANCELLED", "removed": "CANCELLED",
}
SUB_TASK_STATUSES = ("PENDING", "QUEUED", "STARTED", "COMPLETED", "CANCELLED", "ERROR")


def sub_task_status(state: str | None) -> str:
    return SUB_TASK_STATUS.get(state, "PENDING")
