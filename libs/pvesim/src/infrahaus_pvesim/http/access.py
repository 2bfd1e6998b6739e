"""/access: login tickets (with PVE's no-op GET that login forms probe), the caller's permissions, and one user's
account (whether it is enabled)."""

from typing import Any

from infrahaus_pvesim.access import AccessError
from infrahaus_pvesim.http.common import ApiError, Ctx, ResourceHandlers, Routes


class AccessHandlers(ResourceHandlers):
    def routes(self) -> Routes:
        return {
            ("GET", "/access/ticket"): self.ticket_index,
            ("POST", "/access/ticket"): self.ticket,
            ("GET", "/access/permissions"): self.permissions,
            ("GET", "/access/users/{userid}"): self.read_user,
        }

    async def ticket_index(self, ctx: Ctx) -> Any:
        # PVE's GET /access/ticket is a no-op that lets login forms probe the API.
        return None

    async def ticket(self, ctx: Ctx) -> Any:
        try:
            return self.access.login(
                ctx.params["username"], ctx.params["password"], ctx.params.get("realm"), ctx.params.get("tfa-challenge")
            )
        except AccessError as exc:
            raise ApiError(exc.status, exc.message) from exc

    async def permissions(self, ctx: Ctx) -> Any:
        return self.access.permissions(ctx.who, ctx.params.get("path"), ctx.params.get("userid"))

    async def read_user(self, ctx: Ctx) -> Any:
        return self.access.read_user(ctx.who, ctx.path["userid"])
