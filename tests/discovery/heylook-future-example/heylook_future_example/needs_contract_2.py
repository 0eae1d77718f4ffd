"""Written for a heylook plugin contract this core does not offer: none of its hooks may be registered."""

from typing import Any

from fastapi import APIRouter

from heylook_core import ProviderSpec, hookimpl

HEYLOOK_CONTRACT = ">=2,<3"


@hookimpl
def register_providers(register: Any) -> None:
    from heylook_echo.provider import EchoProvider

    register(ProviderSpec(name="future", factory=lambda: EchoProvider))


@hookimpl
def register_routes(router: APIRouter) -> None:
    @router.get("/-/future")
    async def future() -> dict[str, str]:
        return {"loaded": "it should not have been"}
