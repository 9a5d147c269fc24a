"""Who is calling, and what they may see: Airflow's user plus the product DB's groups.

Authentication is Airflow's: :data:`GetUserDep` checks the bearer JWT (or UI cookie) through
the configured auth manager (401 without a token, 403 for a bad one). Authorisation follows
OasisPlatform's group rules (``permissions/group_auth.py``):

* admins (an auth-manager role in PERILFLOW_ADMIN_ROLES, or membership of group ``admin``) see
  and change everything;
* others see objects without groups or sharing a group with them (anything else is 404),
  and may change only those (a hidden object's change is 403, as the reference's
  write-permission check runs on every object);
* an analysis has its portfolio's groups;
* a user whose only auth-manager role is ``viewer`` may read but not change (403 on any other method).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from perilflow.plugins.db.models import Analysis, Group, GroupMembership, Portfolio
from perilflow.plugins.settings import ApiSettings

ADMIN_GROUP = "admin"
T = TypeVar("T")


async def get_settings(request: Request) -> ApiSettings:
    # async: no I/O, so no trip through the threadpool
    return request.app.state.perilflow_settings


def get_db(request: Request) -> Iterator[Session]:
    """The request's product-DB session: committed when the route returns, then the files it released removed."""
    from perilflow.plugins.api import files

    session: Session = request.app.state.perilflow_sessionmaker()
    try:
        yield session
        session.commit()
        files.run_removals(session, request.app.state.perilflow_settings, committed=True)
    except BaseException:
        session.rollback()
        files.run_removals(session, request.app.state.perilflow_settings, committed=False)
        raise
    finally:
        session.close()


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
# scope="function": commit when the route returns, before the reply is sent; with the default ("request")
# the commit ran after the reply, and a client's next request could read the old row (seen live: settings
# POSTed, then generate_and_run answered "the analysis has no settings")
DbDep = Annotated[Session, Depends(get_db, scope="function")]


#: auth-manager roles that may only read (Airflow's simple auth manager "viewer", FAB "Viewer")
READ_ONLY_ROLES = frozenset({"viewer"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    name: str
    groups: frozenset[str]
    admin: bool


def _roles(user: Any) -> set[str]:
    roles: set[str] = set()
    role = getattr(user, "role", None)
    if isinstance(role, str):
        roles.add(role.lower())
    for item in getattr(user, "roles", None) or []:
        roles.add(str(getattr(item, "name", item)).lower())
    return roles


def get_caller(request: Request, user: GetUserDep, db: DbDep, settings: SettingsDep) -> Caller:
    name = user.get_name()
    groups = frozenset(db.scalars(select(Group.name).join(GroupMembership).where(GroupMembership.username == name)))
    # give the connection back until the route runs: FastAPI runs this and the route in separate
    # threadpool turns, and under load requests holding a connection while they wait for a thread
    # emptied the pool (QueuePool timeouts, benchmarks/api.py)
    db.commit()
    roles = _roles(user)
    admin = ADMIN_GROUP in groups or bool(roles & set(settings.admin_roles))
    if not admin and roles and roles <= READ_ONLY_ROLES and request.method not in READ_METHODS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"user {name} has a read-only role "
                            f"({', '.join(sorted(roles))}); ask an admin for the user or op role to change anything")
    return Caller(name=name, groups=groups, admin=admin)


CallerDep = Annotated[Caller, Depends(get_caller)]


def visible(entity: Any, caller: Caller) -> ColumnElement[bool] | None:
    """A WHERE clause for the rows of ``entity`` (Model, Portfolio, DataFile, Analysis) ``caller`` may see."""
    if caller.admin:
        return None
    if entity is Analysis:
        clause = visible(Portfolio, caller)
        return None if clause is None else Analysis.portfolio.has(clause)
    return or_(~entity.groups.any(), entity.groups.any(Group.name.in_(caller.groups)))


def group_names(obj: Any) -> list[str]:
    if isinstance(obj, Analysis):
        obj = obj.portfolio
    return sorted(g.name for g in obj.groups)


def may_change(obj: Any, caller: Caller) -> bool:
    names = group_names(obj)
    return caller.admin or not names or bool(set(names) & caller.groups)


def get_visible(db: Session, entity: type[T], obj_id: int, caller: Caller, what: str) -> T:
    """The object if ``caller`` may see it; 404 otherwise (hidden objects are not revealed)."""
    stmt = select(entity).where(entity.id == obj_id)  # type: ignore[attr-defined]
    clause = visible(entity, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    obj = db.scalar(stmt)
    if obj is None or getattr(obj, "deleted", False):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {obj_id} not found")
    return obj


def get_changeable(db: Session, entity: type[T], obj_id: int, caller: Caller, what: str) -> T:
    """The object if ``caller`` may change it; 404 when it does not exist, 403 when it is another group's."""
    obj = db.get(entity, obj_id)
    if obj is None or getattr(obj, "deleted", False):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {obj_id} not found")
    if not may_change(obj, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"you are not a member of the groups of {what} {obj_id} ({', '.join(group_names(obj))})")
    return obj


def resolve_groups(db: Session, names: Sequence[str] | None, caller: Caller) -> list[Group]:
    """Groups for a new or changed object: the caller's own when ``names`` is None.

    Non-admins may only name groups they belong to (400, as the reference); admins may
    name new groups, which are created.
    """
    wanted = sorted(caller.groups) if names is None else sorted(set(names))
    if not caller.admin:
        foreign = [n for n in wanted if n not in caller.groups]
        if foreign:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                {"groups": [f"user is not member of group(s): {foreign}"]})
    groups = list(db.scalars(select(Group).where(Group.name.in_(wanted)))) if wanted else []
    missing = set(wanted) - {g.name for g in groups}
    for name in sorted(missing):
        group = Group(name=name)
        db.add(group)
        groups.append(group)
    return groups


def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins may do this")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]


def api_base(request: Request) -> str:
    """The API's own base URL, mount prefix included (``http://host:8080/perilflow``)."""
    base = str(request.base_url).rstrip("/")
    root = str(request.scope.get("root_path") or "").rstrip("/")
    return base if not root or base.endswith(root) else base + root
