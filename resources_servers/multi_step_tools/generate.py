"""Generate multi_step_tools tasks: ``python resources_servers/multi_step_tools/generate.py -n 50 --seed 0``.

Each task is a small shop world (3 customers, their orders, a 15-product catalog, stock),
an instruction a support agent must carry out with the tools, the EXPECTED FINAL STATE of
the world, and an emulator script that plays the right tool calls turn by turn. The
expected state is computed here directly from the seed (not by running the tools), so a
test that plays the script through ``World`` checks the tools against an independent
answer.

Task types (cycled, each with a branch where the right move is to change nothing or to
take the other path): swap a product in the latest order if enough stock, else cancel;
change a quantity if enough stock, else leave it; cancel unless shipped; add a product;
cancel every cancellable order; remove a product, or cancel when it is the only one.
Same ``--seed``, same file; ``data/tasks.jsonl`` is ``-n 55 --seed 0`` (5 of each type).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nemo_gym_cli.tasks import write_tasks_command
from resources_servers.multi_step_tools.world import tool_definitions

SYSTEM_PROMPT = (
    "You are a support agent for an online shop. Use the tools to look things up and to make exactly the "
    "changes the request asks for, nothing else. Find a product's sku with search_products. When you are "
    "done, reply with one short sentence saying what you did."
)
# sku -> (name, price in cents)
CATALOG = {
    "MUG-BLU": ("Blue mug", 1200),
    "MUG-RED": ("Red mug", 1200),
    "MUG-GRN": ("Green mug", 1250),
    "NB-BLK": ("Black notebook", 450),
    "NB-YEL": ("Yellow notebook", 450),
    "BTL-STL": ("Steel water bottle", 2200),
    "BTL-GLS": ("Glass water bottle", 1800),
    "SCF-WOL": ("Wool scarf", 3500),
    "SCF-COT": ("Cotton scarf", 2000),
    "LMP-DSK": ("Desk lamp", 3900),
    "STD-PHN": ("Phone stand", 1500),
    "PEN-GEL": ("Gel pen", 250),
    "PEN-FTN": ("Fountain pen", 4500),
    "TEA-GRN": ("Green tea", 800),
    "TEA-BLK": ("Black tea", 750),
}
SWAPS = [
    ("MUG-BLU", "MUG-RED"),
    ("MUG-RED", "MUG-GRN"),
    ("NB-BLK", "NB-YEL"),
    ("BTL-STL", "BTL-GLS"),
    ("SCF-WOL", "SCF-COT"),
    ("PEN-GEL", "PEN-FTN"),
    ("TEA-GRN", "TEA-BLK"),
]
PEOPLE = [
    ("Ana", "Lopez"),
    ("Ben", "Okafor"),
    ("Chloe", "Martin"),
    ("Dev", "Patel"),
    ("Elena", "Rossi"),
    ("Farid", "Haddad"),
    ("Grace", "Kim"),
    ("Hiro", "Tanaka"),
    ("Ines", "Silva"),
    ("Jamal", "Wright"),
]


def script_for(turns: list[dict[str, Any]]) -> str:
    """The emulator script: a JSON list of turns, each ``{"tool_calls": [{"name", "arguments"}]}`` or ``{"text"}``."""
    return json.dumps(turns)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def name(sku: str) -> str:
    return CATALOG[sku][0].lower()


# --- the world ---------------------------------------------------------------------------


def build_world(rng: random.Random) -> dict[str, Any]:
    """3 customers with 1-3 orders each (oldest may have shipped), random stock."""
    people = rng.sample(PEOPLE, 3)
    ids = iter(rng.sample(range(1000, 10000), 9))
    customers, orders = {}, {}
    for first, last in people:
        email = f"{first.lower()}.{last.lower()}@example.com"
        customers[email] = {"name": f"{first} {last}"}
        count = rng.randint(1, 3)
        days = sorted(rng.sample(range(1, 200), count))
        for k, day in enumerate(days):
            status = "pending" if k == count - 1 or rng.random() < 0.5 else rng.choice(["shipped", "delivered"])
            items = {sku: rng.randint(1, 3) for sku in rng.sample(sorted(CATALOG), rng.randint(1, 3))}
            month, mday = divmod(day - 1, 28)
            orders[f"O-{next(ids)}"] = {
                "customer": email,
                "placed": f"2024-{month + 1:02d}-{mday + 1:02d}",
                "status": status,
                "items": items,
            }
    catalog = {sku: {"name": n, "price_cents": p} for sku, (n, p) in CATALOG.items()}
    stock = {sku: rng.randint(0, 15) for sku in CATALOG}
    return {"customers": customers, "orders": orders, "catalog": catalog, "stock": stock}


def orders_of(world: dict[str, Any], email: str) -> list[str]:
    """A customer's order ids, oldest first."""
    return sorted(
        (oid for oid, o in world["orders"].items() if o["customer"] == email),
        key=lambda o: world["orders"][o]["placed"],
    )


def state(world: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders": {oid: {"status": o["status"], "items": dict(o["items"])} for oid, o in world["orders"].items()},
        "stock": dict(world["stock"]),
    }


def cancel(st: dict[str, Any], oid: str) -> None:
    for sku, qty in st["orders"][oid]["items"].items():
        st["stock"][sku] += qty
    st["orders"][oid]["status"] = "cancelled"


def set_qty(st: dict[str, Any], oid: str, sku: str, qty: int) -> None:
    items = st["orders"][oid]["items"]
    st["stock"][sku] -= qty - items.get(sku, 0)
    if qty:
        items[sku] = qty
    else:
        items.pop(sku, None)


# --- scenarios: each edits the world to fit, and returns (instruction, script, expected) ----


def swap(rng: random.Random, world: dict[str, Any], enough: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    old, new = rng.choice(SWAPS)
    latest = orders_of(world, email)[-1]
    order = world["orders"][latest]
    order["status"] = "pending"
    order["items"].pop(new, None)
    qty = order["items"].setdefault(old, rng.randint(1, 3))
    world["stock"][new] = qty + rng.randint(0, 5) if enough else rng.randint(0, qty - 1)
    expected = state(world)
    instruction = (
        f"Customer {email} wants to swap the {name(old)}s in their most recent order for {name(new)}s, same quantity. "
        f"If there are not enough {name(new)}s in stock for that, cancel that order instead."
    )
    turns = [call("get_customer", email=email), call("lookup_order", order_id=latest)]
    turns += [call("search_products", query=name(new)), call("check_stock", sku=new)]
    if enough:
        set_qty(expected, latest, new, qty)
        set_qty(expected, latest, old, 0)
        turns += [call("change_order", order_id=latest, sku=new, quantity=qty)]
        turns += [call("change_order", order_id=latest, sku=old, quantity=0)]
        turns += [{"text": f"Swapped the {name(old)}s in order {latest} for {qty} {name(new)}(s)."}]
    else:
        cancel(expected, latest)
        turns += [call("cancel_order", order_id=latest)]
        turns += [{"text": f"Only {world['stock'][new]} {name(new)}(s) in stock, so I cancelled order {latest}."}]
    return instruction, turns, expected


def change_quantity(rng: random.Random, world: dict[str, Any], enough: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    oid = orders_of(world, email)[-1]
    order = world["orders"][oid]
    order["status"] = "pending"
    sku = rng.choice(sorted(order["items"]))
    qty = order["items"][sku]
    target = qty + rng.randint(1, 4)
    world["stock"][sku] = target - qty + rng.randint(0, 4) if enough else rng.randint(0, target - qty - 1)
    expected = state(world)
    instruction = (
        f"Customer {email} wants {target} {name(sku)}s instead of {qty} in order {oid}. "
        "If there are not enough in stock for that, leave the order unchanged."
    )
    turns = [call("lookup_order", order_id=oid), call("check_stock", sku=sku)]
    if enough:
        set_qty(expected, oid, sku, target)
        turns += [
            call("change_order", order_id=oid, sku=sku, quantity=target),
            {"text": f"Order {oid} now has {target}."},
        ]
    else:
        turns += [{"text": f"Only {world['stock'][sku]} more in stock, so order {oid} stays as it is."}]
    return instruction, turns, expected


def cancel_unless_shipped(rng: random.Random, world: dict[str, Any], shipped: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    oid = rng.choice(orders_of(world, email))
    world["orders"][oid]["status"] = rng.choice(["shipped", "delivered"]) if shipped else "pending"
    expected = state(world)
    instruction = f"Customer {email} asks us to cancel order {oid}. Cancel it unless it has already shipped."
    turns = [call("lookup_order", order_id=oid)]
    if shipped:
        turns += [{"text": f"Order {oid} has already left the warehouse, so it cannot be cancelled."}]
    else:
        cancel(expected, oid)
        turns += [call("cancel_order", order_id=oid), {"text": f"Order {oid} is cancelled."}]
    return instruction, turns, expected


def add_product(rng: random.Random, world: dict[str, Any], already: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    mine = orders_of(world, email)
    oid = mine[-1]
    for other in mine[:-1]:
        world["orders"][other]["status"] = rng.choice(["shipped", "delivered"])
    order = world["orders"][oid]
    order["status"] = "pending"
    sku = rng.choice(sorted(order["items"])) if already else rng.choice(sorted(set(CATALOG) - set(order["items"])))
    have = order["items"].get(sku, 0)
    more = rng.randint(1, 3)
    world["stock"][sku] = more + rng.randint(0, 6)
    expected = state(world)
    set_qty(expected, oid, sku, have + more)
    instruction = f"Add {more} more {name(sku)}(s) to the pending order of customer {email}."
    turns = [call("get_customer", email=email), call("lookup_order", order_id=oid)]
    turns += [call("search_products", query=name(sku))]
    turns += [call("change_order", order_id=oid, sku=sku, quantity=have + more)]
    turns += [{"text": f"Order {oid} now has {have + more} {name(sku)}(s)."}]
    return instruction, turns, expected


def cancel_all(rng: random.Random, world: dict[str, Any], with_shipped: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    while len(orders_of(world, email)) < 3:  # give the customer three orders
        oid = f"O-{rng.randint(1000, 9999)}"
        if oid not in world["orders"]:
            day = rng.randint(1, 28)
            world["orders"][oid] = {
                "customer": email,
                "placed": f"2024-08-{day:02d}",
                "status": "pending",
                "items": {rng.choice(sorted(CATALOG)): rng.randint(1, 2)},
            }
    mine = orders_of(world, email)
    for i, oid in enumerate(mine):
        world["orders"][oid]["status"] = "shipped" if with_shipped and i == 0 else "pending"
    expected = state(world)
    open_orders = [oid for oid in mine if world["orders"][oid]["status"] == "pending"]
    for oid in open_orders:
        cancel(expected, oid)
    instruction = (
        f"Customer {email} is closing their account: cancel every one of their orders that can still be cancelled."
    )
    calls = [{"name": "cancel_order", "arguments": {"order_id": oid}} for oid in open_orders]
    turns = [call("get_customer", email=email), {"tool_calls": calls}]
    turns += [{"text": f"Cancelled {', '.join(open_orders)}."}]
    return instruction, turns, expected


def remove_product(rng: random.Random, world: dict[str, Any], only: bool) -> tuple[str, list, dict]:
    email = rng.choice(sorted(world["customers"]))
    oid = orders_of(world, email)[-1]
    order = world["orders"][oid]
    order["status"] = "pending"
    skus = sorted(order["items"])
    if only:
        order["items"] = {skus[0]: order["items"][skus[0]]}
    elif len(skus) == 1:
        order["items"][rng.choice(sorted(set(CATALOG) - set(skus)))] = rng.randint(1, 2)
    sku = rng.choice(sorted(order["items"]))
    expected = state(world)
    instruction = (
        f"Remove the {name(sku)}s from order {oid} (customer {email}). "
        "If they are the only product in the order, cancel the order instead."
    )
    turns = [call("lookup_order", order_id=oid)]
    if only:
        cancel(expected, oid)
        turns += [call("cancel_order", order_id=oid), {"text": f"That was all of order {oid}, so I cancelled it."}]
    else:
        set_qty(expected, oid, sku, 0)
        turns += [call("change_order", order_id=oid, sku=sku, quantity=0), {"text": f"Removed them from {oid}."}]
    return instruction, turns, expected


SCENARIOS: list[tuple[str, Callable[[random.Random, dict[str, Any], bool], tuple[str, list, dict]], bool]] = [
    ("swap_in_stock", swap, True),
    ("swap_out_of_stock_cancel", swap, False),
    ("change_quantity", change_quantity, True),
    ("change_quantity_not_enough_stock", change_quantity, False),
    ("cancel_pending", cancel_unless_shipped, False),
    ("cancel_refused_shipped", cancel_unless_shipped, True),
    ("add_new_product", add_product, False),
    ("add_more_of_a_product", add_product, True),
    ("cancel_all_cancellable", cancel_all, True),
    ("remove_product", remove_product, False),
    ("remove_only_product_cancels", remove_product, True),
]


def generate(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    tools = tool_definitions()
    for i in range(n):
        task_type, scenario, flag = SCENARIOS[i % len(SCENARIOS)]
        world = build_world(rng)
        instruction, turns, expected = scenario(rng, world, flag)
        yield {
            "responses_create_params": {
                "input": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": instruction}],
                "tools": copy.deepcopy(tools),
                "metadata": {"emulator_script": script_for(turns)},
            },
            "world": world,
            "instruction": instruction,
            "expected_state": expected,
            "task_type": task_type,
            "meta": {"source": "generated", "id": f"mst-{seed}-{i:04d}"},
        }


def main() -> None:
    write_tasks_command(generate, __doc__, Path(__file__).parent, count=50)


if __name__ == "__main__":
    main()
