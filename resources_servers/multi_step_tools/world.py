"""multi_step_tools: a small shop (customers, orders, a catalog, stock) that one rollout changes through tools.

Each rollout gets its own ``World`` built from the row's ``world`` seed. The tools feed each
other: ``get_customer`` gives order ids, ``lookup_order`` gives skus, ``search_products``
finds a sku by name, ``check_stock`` says how many are left, and ``change_order`` /
``cancel_order`` change the world (moving units between orders and stock). A bad call
raises ``ToolCallError`` (a ``ValueError``) whose message is meant for the MODEL: what was
wrong and which tool to use instead.

``verify_world(world, row)`` scores the rollout by the world's FINAL STATE (orders' status
and items, stock), not by what the model said: reward 1 iff it equals
``row["expected_state"]``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TOOL_NAMES", "ToolCallError", "World", "tool_definitions", "verify_world"]

MAX_QUANTITY = 20  # per order line: a shop limit the model can be told about


class ToolCallError(ValueError):
    """A tool call the world refuses; the message is shown to the model."""


_TOOLS: set[str] = set()  # the names of World's methods that are tools (``_tool`` adds them)


def _tool(method: Callable[..., Any]) -> Callable[..., Any]:
    """Record every call (and whether it failed) in ``world.calls``."""

    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: World, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        record = {"name": method.__name__, "arguments": {k: v for k, v in arguments.items() if k != "self"}}
        self.calls.append(record)
        try:
            return method(self, *args, **kwargs)
        except ToolCallError as e:
            record["error"] = str(e)
            raise

    _TOOLS.add(method.__name__)
    return wrapper


@dataclass
class World:
    """One rollout's shop. Build it with ``World.from_seed(row["world"])``."""

    customers: dict[str, dict[str, Any]]  # email -> {"name"}
    orders: dict[str, dict[str, Any]]  # order id -> {"customer", "placed" (ISO date), "status", "items": {sku: qty}}
    catalog: dict[str, dict[str, Any]]  # sku -> {"name", "price_cents"}
    stock: dict[str, int]  # sku -> units available
    calls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_seed(cls, seed: dict[str, Any]) -> World:
        """A fresh world from a row's ``world`` object (deep-copied: the row is never changed)."""
        seed = copy.deepcopy(seed)
        try:
            return cls(customers=seed["customers"], orders=seed["orders"], catalog=seed["catalog"], stock=seed["stock"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"row 'world' needs customers, orders, catalog and stock objects: missing {e}") from e

    def state(self) -> dict[str, Any]:
        """What the verifier compares: each order's status and items, and the stock."""
        return {
            "orders": {oid: {"status": o["status"], "items": dict(o["items"])} for oid, o in self.orders.items()},
            "stock": dict(self.stock),
        }

    # --- lookups -------------------------------------------------------------------------

    def _order(self, order_id: Any) -> dict[str, Any]:
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None:
            raise ToolCallError(
                f"no order {order_id!r}; order ids look like 'O-1042'. get_customer(email) lists a customer's orders."
            )
        return order

    def _sku(self, sku: Any) -> str:
        if not isinstance(sku, str) or sku not in self.catalog:
            raise ToolCallError(f"no product with sku {sku!r}; search_products(query) finds skus by product name.")
        return sku

    def _order_view(self, order_id: str) -> dict[str, Any]:
        order = self.orders[order_id]
        items = [
            {
                "sku": sku,
                "name": self.catalog[sku]["name"],
                "quantity": qty,
                "unit_price": self.catalog[sku]["price_cents"] / 100,
            }
            for sku, qty in order["items"].items()
        ]
        total = sum(self.catalog[sku]["price_cents"] * qty for sku, qty in order["items"].items()) / 100
        return {
            "order_id": order_id,
            "customer_email": order["customer"],
            "placed": order["placed"],
            "status": order["status"],
            "items": items,
            "total": total,
        }

    # --- tools ---------------------------------------------------------------------------

    @_tool
    def get_customer(self, email: str) -> dict:
        """Find a customer by email: their name and orders (id, date placed, status), oldest first.

        Args:
            email: The customer's email address, e.g. "ana@example.com".
        """
        key = email.strip().lower() if isinstance(email, str) else None
        if key not in self.customers:
            raise ToolCallError(f"no customer with email {email!r}; check the address in the request.")
        orders = sorted((o["placed"], oid) for oid, o in self.orders.items() if o["customer"] == key)
        return {
            "email": key,
            "name": self.customers[key]["name"],
            "orders": [
                {"order_id": oid, "placed": placed, "status": self.orders[oid]["status"]} for placed, oid in orders
            ],
        }

    @_tool
    def lookup_order(self, order_id: str) -> dict:
        """An order's status, date and items (sku, name, quantity, unit price) and total.

        Args:
            order_id: The order id, e.g. "O-1042".
        """
        self._order(order_id)
        return self._order_view(order_id)

    @_tool
    def search_products(self, query: str) -> list:
        """Products whose name contains every word of the query (case-insensitive): sku, name, price.

        Args:
            query: Words of the product name, e.g. "red mug".
        """
        words = re.findall(r"\w+", query.lower()) if isinstance(query, str) else []
        if not words:
            raise ToolCallError('search_products needs a non-empty query, e.g. {"query": "red mug"}.')
        return [
            {"sku": sku, "name": p["name"], "price": p["price_cents"] / 100}
            for sku, p in sorted(self.catalog.items())
            if all(w in p["name"].lower() for w in words)
        ]

    @_tool
    def check_stock(self, sku: str) -> dict:
        """How many units of a product are in stock.

        Args:
            sku: The product's sku, e.g. "MUG-RED".
        """
        sku = self._sku(sku)
        return {"sku": sku, "name": self.catalog[sku]["name"], "in_stock": self.stock.get(sku, 0)}

    @_tool
    def change_order(self, order_id: str, sku: str, quantity: int) -> dict:
        """Set how many units of a product a pending order contains (0 removes the product).

        Units come from, or go back to, stock. An order keeps at least one product: to
        empty it, cancel it.

        Args:
            order_id: The order id, e.g. "O-1042".
            sku: The product's sku, e.g. "MUG-RED".
            quantity: The new number of units of this product in the order, 0 to 20.
        """
        order = self._order(order_id)
        sku = self._sku(sku)
        if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity != int(quantity):
            raise ToolCallError(f"quantity must be a whole number from 0 to {MAX_QUANTITY}, got {quantity!r}.")
        quantity = int(quantity)
        if not 0 <= quantity <= MAX_QUANTITY:
            raise ToolCallError(f"quantity must be from 0 to {MAX_QUANTITY}, got {quantity}.")
        if order["status"] != "pending":
            raise ToolCallError(f"order {order_id} is {order['status']}; only pending orders can be changed.")
        current = order["items"].get(sku, 0)
        if quantity == 0 and current and len(order["items"]) == 1:
            raise ToolCallError(
                f"{sku} is the only product in order {order_id}; an order cannot be empty. Use cancel_order instead."
            )
        extra = quantity - current
        if extra > self.stock.get(sku, 0):
            raise ToolCallError(
                f"only {self.stock.get(sku, 0)} of {sku} in stock; cannot add {extra} more to order {order_id}."
            )
        self.stock[sku] = self.stock.get(sku, 0) - extra
        if quantity:
            order["items"][sku] = quantity
        else:
            order["items"].pop(sku, None)
        return self._order_view(order_id)

    @_tool
    def cancel_order(self, order_id: str) -> dict:
        """Cancel a pending order; its products go back to stock. Shipped orders cannot be cancelled.

        Args:
            order_id: The order id, e.g. "O-1042".
        """
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ToolCallError(f"order {order_id} is {order['status']}; only pending orders can be cancelled.")
        for sku, qty in order["items"].items():
            self.stock[sku] = self.stock.get(sku, 0) + qty
        order["status"] = "cancelled"
        return self._order_view(order_id)

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run tool ``name`` with a model's ``arguments``; unknown tools and wrong argument
        names are ``ToolCallError``s too."""
        method = getattr(self, name, None) if name in TOOL_NAMES else None
        if method is None:
            raise ToolCallError(f"no tool {name!r}; the tools are {', '.join(TOOL_NAMES)}.")
        params = list(inspect.signature(method).parameters)
        if not isinstance(arguments, dict):
            raise ToolCallError(f"{name} takes a JSON object of arguments {params}, got {arguments!r}.")
        unknown, missing = set(arguments) - set(params), [p for p in params if p not in arguments]
        if unknown or missing:
            raise ToolCallError(
                f"{name} takes arguments {params}; missing {missing}, unexpected {sorted(unknown)}."
                if missing
                else f"{name} takes arguments {params}; unexpected {sorted(unknown)}."
            )
        return method(**arguments)


TOOL_NAMES: tuple[str, ...] = tuple(name for name in vars(World) if name in _TOOLS)

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _describe(doc: str) -> tuple[str, dict[str, str]]:
    """A Google-style docstring's summary and its ``Args:`` descriptions."""
    summary, _, args = inspect.cleandoc(doc).partition("\nArgs:\n")
    params = dict(re.findall(r"^\s+(\w+): (.+)$", args, flags=re.M))
    return " ".join(summary.split()), params


def tool_definitions() -> list[dict[str, Any]]:
    """The tools as Responses-API function definitions (JSON schemas from the type hints)."""
    definitions = []
    for name in TOOL_NAMES:
        method = getattr(World, name)
        hints = typing.get_type_hints(method)
        summary, arg_docs = _describe(method.__doc__ or "")
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        properties = {p: {"type": _JSON_TYPES[hints[p]], "description": arg_docs.get(p, "")} for p in params}
        definitions.append(
            {
                "type": "function",
                "name": name,
                "description": summary,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": params,
                    "additionalProperties": False,
                },
            }
        )
    return definitions


def _diff(expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{where}: expected {expected[key]!r}, missing")
            elif key not in expected:
                out.append(f"{where}: unexpected {actual[key]!r}")
            else:
                _diff(expected[key], actual[key], where, out)
    elif expected != actual:
        out.append(f"{path}: expected {expected!r}, got {actual!r}")


def verify_world(world: World, row: dict[str, Any]) -> dict[str, Any]:
    """Score a rollout by the world's final state.

    Returns ``reward`` (1.0 iff ``world.state()`` equals ``row["expected_state"]``),
    ``state_diff`` (one line per difference, e.g. ``orders.O-1042.status: expected
    'cancelled', got 'pending'``), ``num_tool_calls`` and ``num_tool_errors``. A row without
    ``expected_state`` raises ``ValueError`` (a data error).
    """
    expected = row.get("expected_state")
    if not isinstance(expected, dict):
        raise ValueError(f"multi_step_tools row needs an 'expected_state' object, got {expected!r}")
    diff: list[str] = []
    _diff(expected, world.state(), "", diff)
    return {
        "reward": 0.0 if diff else 1.0,
        "state_diff": diff,
        "num_tool_calls": len(world.calls),
        "num_tool_errors": sum(1 for c in world.calls if "error" in c),
    }
