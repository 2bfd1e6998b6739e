"""Helpers of the worker tests: create through the API, read operations and containers back."""

from typing import Any

from sqlalchemy import select

from infrahaus_domain.models.containers import Container, Event, Operation
from infrahaus_worker.context import WorkerContext
from tests.fixtures.api import UserClient


async def request_container(user: UserClient, **body: Any) -> tuple[str, str, dict[str, Any]]:
    """`POST /api/containers`; returns (container id, operation id, response body)."""
    payload = {"hostname": "ct-test", **body}
    response = await user.http.post("/api/containers", json=payload)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data["container"]["id"], data["operation"]["id"], data


async def request_action(user: UserClient, container_id: str, action: str, **body: Any) -> str:
    if action == "delete":
        response = await user.http.delete(f"/api/containers/{container_id}")
    else:
        response = await user.http.post(f"/api/containers/{container_id}/{action}", json=body or None)
    assert response.status_code == 202, response.text
    op_id: str = response.json()["id"]
    return op_id


async def operation(ctx: WorkerContext, operation_id: str) -> Operation:
    async with ctx.session() as session:
        op = await session.get(Operation, operation_id)
        assert op is not None
        return op


async def container(ctx: WorkerContext, container_id: str) -> Container | None:
    async with ctx.session() as session:
        return await session.get(Container, container_id)


async def events(ctx: WorkerContext, container_id: str) -> list[Event]:
    async with ctx.session() as session:
        rows = await session.scalars(select(Event).where(Event.container_id == container_id).order_by(Event.seq))
        return list(rows.all())
