"""Declares no contract range, as plugins written before heylook versioned its contract: loaded, with a warning."""

from fastapi import APIRouter

from heylook_core import hookimpl


@hookimpl
def register_routes(router: APIRouter) -> None:
    @router.get("/-/undeclared")
    async def undeclared() -> dict[str, str]:
        return {"loaded": "with a warning"}
