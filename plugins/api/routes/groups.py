"""``/v2/groups/``: admin-only group management (the reference does this in Django's admin site).

Groups decide who sees what (see ``auth.py``); membership is by the auth manager's user name.
Deleting a group removes it from every model, portfolio and data file that had it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from perilflow.plugins.api.auth import AdminDep, DbDep
from perilflow.plugins.db.models import Group, GroupMembership

router = APIRouter(prefix="/v2/groups", tags=["groups"])
GroupName = Field(min_length=1, max_length=150, pattern=r"^[^/\s][^/]*$")


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = GroupName
    members: list[str] = Field(default_factory=list)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=255)


def group_json(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "members": sorted(m.username for m in group.members)}


def _group(db: DbDep, group_pk: int) -> Group:
    group = db.get(Group, group_pk)
    if group is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"group {group_pk} not found")
    return group


@router.get("/", summary="All groups and their members (admin)")
def list_groups(db: DbDep, caller: AdminDep) -> list[dict[str, Any]]:
    return [group_json(g) for g in db.scalars(select(Group).order_by(Group.id))]


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create a group, optionally with members (admin)")
def create_group(body: GroupIn, db: DbDep, caller: AdminDep) -> dict[str, Any]:
    if db.scalar(select(Group).where(Group.name == body.name)) is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"name": [f"group {body.name!r} exists"]})
    group = Group(name=body.name, members=[GroupMembership(username=u) for u in sorted(set(body.members))])
    db.add(group)
    db.flush()
    return group_json(group)


@router.get("/{group_pk}/", summary="One group (admin)")
def get_group(group_pk: int, db: DbDep, caller: AdminDep) -> dict[str, Any]:
    return group_json(_group(db, group_pk))


@router.put("/{group_pk}/", summary="Rename a group and replace its members (admin)")
def put_group(group_pk: int, body: GroupIn, db: DbDep, caller: AdminDep) -> dict[str, Any]:
    group = _group(db, group_pk)
    other = db.scalar(select(Group).where(Group.name == body.name, Group.id != group_pk))
    if other is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"name": [f"group {body.name!r} exists"]})
    group.name = body.name
    wanted = set(body.members)
    group.members = [m for m in group.members if m.username in wanted] + [
        GroupMembership(username=u) for u in sorted(wanted - {m.username for m in group.members})]
    db.flush()
    return group_json(group)


@router.delete("/{group_pk}/", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a group (admin)")
def delete_group(group_pk: int, db: DbDep, caller: AdminDep) -> Response:
    db.delete(_group(db, group_pk))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{group_pk}/members/", status_code=status.HTTP_201_CREATED, summary="Add a member (admin)")
def add_member(group_pk: int, body: MemberIn, db: DbDep, caller: AdminDep) -> dict[str, Any]:
    group = _group(db, group_pk)
    if any(m.username == body.username for m in group.members):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"username": [f"{body.username} is already a member"]})
    group.members.append(GroupMembership(username=body.username))
    db.flush()
    return group_json(group)


@router.delete("/{group_pk}/members/{username}/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove a member (admin)")
def remove_member(group_pk: int, username: str, db: DbDep, caller: AdminDep) -> Response:
    group = _group(db, group_pk)
    member = next((m for m in group.members if m.username == username), None)
    if member is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{username} is not a member of group {group.name}")
    group.members.remove(member)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
