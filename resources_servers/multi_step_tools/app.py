"""multi_step_tools: a shop the rollout changes through six tools, scored on its final state.

Each rollout's ``World`` lives in its ``session``: built from the row's ``world`` at
``/seed_session``, changed by the tools, scored by ``verify_world`` at ``/verify``. Rollouts
running at once never share one (the kernel keys sessions by the rollout's header or cookie).
Every tool delegates to the ``World`` method of the same name, whose docstring is the tool's
description; a call the world refuses (``ToolCallError``) becomes a ``ToolError``: the model
reads the message as the tool's output and can correct itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server import ResourcesServer, ToolError, tool
from resources_servers.multi_step_tools.world import ToolCallError, World, verify_world

F = TypeVar("F", bound=Callable[..., Any])


def described_by(world_method: Callable[..., Any]) -> Callable[[F], F]:
    """Give a tool the docstring (description and ``Args:``) of the World method it runs."""

    def copy(fn: F) -> F:
        fn.__doc__ = world_method.__doc__
        return fn

    return copy


def world_of(session: dict[str, Any]) -> World:
    world = session.get("world")
    if not isinstance(world, World):
        raise HTTPError(
            400,
            "this rollout has no world: call /seed_session with the row first, then the tools and /verify "
            "with the same x-ng-session-id header (or ng_session cookie)",
            kind="no_session",
            retryable=False,
        )
    return world


def run(session: dict[str, Any], method: Callable[..., Any], *args: Any) -> Any:
    """``method(world, *args)`` on the rollout's world; a refused call is the model's to fix."""
    try:
        return method(world_of(session), *args)
    except ToolCallError as exc:
        raise ToolError(str(exc)) from None


class MultiStepTools(ResourcesServer):
    """The shop's tools on the rollout's own ``World``; ``verify`` compares its final state."""

    async def seed_session(self, session: dict[str, Any], row: dict[str, Any]) -> None:
        try:
            session["world"] = World.from_seed(row.get("world"))  # type: ignore[arg-type]
        except ValueError as exc:
            raise HTTPError(400, f"{exc}: fix the row") from None

    @tool
    @described_by(World.get_customer)
    async def get_customer(self, session: dict[str, Any], email: str) -> dict[str, Any]:
        return run(session, World.get_customer, email)  # type: ignore[no-any-return]

    @tool
    @described_by(World.lookup_order)
    async def lookup_order(self, session: dict[str, Any], order_id: str) -> dict[str, Any]:
        return run(session, World.lookup_order, order_id)  # type: ignore[no-any-return]

    @tool
    @described_by(World.search_products)
    async def search_products(self, session: dict[str, Any], query: str) -> list[dict[str, Any]]:
        return run(session, World.search_products, query)  # type: ignore[no-any-return]

    @tool
    @described_by(World.check_stock)
    async def check_stock(self, session: dict[str, Any], sku: str) -> dict[str, Any]:
        return run(session, World.check_stock, sku)  # type: ignore[no-any-return]

    @tool
    @described_by(World.change_order)
    async def change_order(self, session: dict[str, Any], order_id: str, sku: str, quantity: int) -> dict[str, Any]:
        return run(session, World.change_order, order_id, sku, quantity)  # type: ignore[no-any-return]

    @tool
    @described_by(World.cancel_order)
    async def cancel_order(self, session: dict[str, Any], order_id: str) -> dict[str, Any]:
        return run(session, World.cancel_order, order_id)  # type: ignore[no-any-return]

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        try:
            # reward, state_diff, num_tool_calls, num_tool_errors
            return verify_world(world_of(session), body)
        except ValueError as exc:  # no expected_state: a data error
            raise HTTPError(400, f"{exc}: fix the row") from None
