"""multi_step_tools: world semantics, model-visible errors, the final-state verifier, and the shipped tasks."""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import pytest

from resources_servers.multi_step_tools.generate import generate
from resources_servers.multi_step_tools.world import TOOL_NAMES, ToolCallError, World, tool_definitions, verify_world

TASKS = Path(__file__).parent.parent / "data" / "tasks.jsonl"
SEED = {
    "customers": {"ana@example.com": {"name": "Ana Lopez"}, "ben@example.com": {"name": "Ben Okafor"}},
    "orders": {
        "O-1001": {
            "customer": "ana@example.com",
            "placed": "2024-01-05",
            "status": "delivered",
            "items": {"MUG-BLU": 1},
        },
        "O-1002": {
            "customer": "ana@example.com",
            "placed": "2024-03-10",
            "status": "pending",
            "items": {"MUG-BLU": 2, "PEN": 1},
        },
        "O-1003": {"customer": "ben@example.com", "placed": "2024-02-01", "status": "shipped", "items": {"PEN": 3}},
        "O-1004": {"customer": "ben@example.com", "placed": "2024-02-09", "status": "pending", "items": {"MUG-RED": 1}},
    },
    "catalog": {
        "MUG-BLU": {"name": "Blue mug", "price_cents": 1200},
        "MUG-RED": {"name": "Red mug", "price_cents": 1250},
        "PEN": {"name": "Gel pen", "price_cents": 250},
    },
    "stock": {"MUG-BLU": 4, "MUG-RED": 1, "PEN": 0},
}


def world() -> World:
    return World.from_seed(SEED)


def expected_after(change) -> dict:
    """The seed's state with ``change`` applied by hand."""
    w = World.from_seed(SEED)
    state = w.state()
    change(state)
    return {"expected_state": state}


# --- lookups --------------------------------------------------------------------------------


def test_get_customer_lists_orders_oldest_first() -> None:
    answer = world().get_customer(" Ana@Example.com ")
    assert answer == {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "orders": [
            {"order_id": "O-1001", "placed": "2024-01-05", "status": "delivered"},
            {"order_id": "O-1002", "placed": "2024-03-10", "status": "pending"},
        ],
    }


def test_lookup_order_shows_items_prices_and_total() -> None:
    answer = world().lookup_order("O-1002")
    assert answer["status"] == "pending" and answer["placed"] == "2024-03-10"
    assert answer["items"] == [
        {"sku": "MUG-BLU", "name": "Blue mug", "quantity": 2, "unit_price": 12.0},
        {"sku": "PEN", "name": "Gel pen", "quantity": 1, "unit_price": 2.5},
    ]
    assert answer["total"] == 26.5


def test_search_products_needs_every_word_and_check_stock_counts() -> None:
    w = world()
    assert [p["sku"] for p in w.search_products("mug")] == ["MUG-BLU", "MUG-RED"]
    assert [p["sku"] for p in w.search_products("RED mug")] == ["MUG-RED"]
    assert w.search_products("teapot") == []
    assert w.check_stock("MUG-RED") == {"sku": "MUG-RED", "name": "Red mug", "in_stock": 1}


# --- changes --------------------------------------------------------------------------------


def test_change_order_moves_units_between_stock_and_the_order() -> None:
    w = world()
    w.change_order("O-1002", "MUG-BLU", 5)  # +3 from stock
    w.change_order("O-1002", "MUG-RED", 1)  # new line, last red mug
    w.change_order("O-1002", "PEN", 0)  # removed, back to stock
    assert w.orders["O-1002"]["items"] == {"MUG-BLU": 5, "MUG-RED": 1}
    assert w.stock == {"MUG-BLU": 1, "MUG-RED": 0, "PEN": 1}


def test_cancel_order_returns_every_unit_to_stock() -> None:
    w = world()
    assert w.cancel_order("O-1002")["status"] == "cancelled"
    assert w.stock == {"MUG-BLU": 6, "MUG-RED": 1, "PEN": 1}


def test_the_seed_is_never_changed() -> None:
    before = copy.deepcopy(SEED)
    w = world()
    w.cancel_order("O-1002")
    assert SEED == before


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("get_customer", {"email": "zoe@example.com"}, "no customer with email 'zoe@example.com'"),
        ("lookup_order", {"order_id": "O-9999"}, "no order 'O-9999'; order ids look like 'O-1042'. get_customer"),
        ("lookup_order", {"order_id": 1002}, "no order 1002"),
        ("check_stock", {"sku": "MUG-PNK"}, "no product with sku 'MUG-PNK'; search_products(query)"),
        ("search_products", {"query": "  "}, "needs a non-empty query"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": 2}, "only 0 of PEN in stock; cannot add 1"),
        ("change_order", {"order_id": "O-1004", "sku": "MUG-RED", "quantity": 3}, "only 1 of MUG-RED in stock"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": -1}, "from 0 to 20, got -1"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": 21}, "from 0 to 20, got 21"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": "2"}, "whole number from 0 to 20, got '2'"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": 1.5}, "whole number"),
        ("change_order", {"order_id": "O-1002", "sku": "PEN", "quantity": True}, "whole number"),
        ("change_order", {"order_id": "O-1003", "sku": "PEN", "quantity": 1}, "O-1003 is shipped; only pending"),
        ("change_order", {"order_id": "O-1004", "sku": "MUG-RED", "quantity": 0}, "cannot be empty. Use cancel_order"),
        ("cancel_order", {"order_id": "O-1001"}, "O-1001 is delivered; only pending orders can be cancelled"),
        ("refund_order", {"order_id": "O-1001"}, "no tool 'refund_order'; the tools are get_customer"),
        ("cancel_order", {"id": "O-1002"}, "missing ['order_id'], unexpected ['id']"),
        ("lookup_order", {"order_id": "O-1002", "verbose": True}, "unexpected ['verbose']"),
        ("lookup_order", ["O-1002"], "takes a JSON object"),
    ],
)
def test_bad_calls_raise_an_error_the_model_can_act_on(name: str, arguments, message: str) -> None:
    w = world()
    before = w.state()
    with pytest.raises(ToolCallError) as error:
        w.call(name, arguments)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)
    assert w.state() == before  # a refused call changes nothing


def test_a_cancelled_order_cannot_be_cancelled_or_changed_again() -> None:
    w = world()
    w.cancel_order("O-1002")
    with pytest.raises(ToolCallError, match="is cancelled"):
        w.cancel_order("O-1002")
    with pytest.raises(ToolCallError, match="is cancelled"):
        w.change_order("O-1002", "PEN", 1)


def test_calls_are_recorded_with_their_errors() -> None:
    w = world()
    w.call("lookup_order", {"order_id": "O-1002"})
    with pytest.raises(ToolCallError):
        w.call("cancel_order", {"order_id": "O-1001"})
    assert w.calls == [
        {"name": "lookup_order", "arguments": {"order_id": "O-1002"}},
        {"name": "cancel_order", "arguments": {"order_id": "O-1001"}, "error": w.calls[1]["error"]},
    ]


def test_tool_definitions_follow_the_signatures() -> None:
    definitions = {d["name"]: d for d in tool_definitions()}
    assert tuple(definitions) == TOOL_NAMES
    assert set(TOOL_NAMES) == {
        "get_customer",
        "lookup_order",
        "search_products",
        "check_stock",
        "change_order",
        "cancel_order",
    }
    change = definitions["change_order"]["parameters"]
    assert change["required"] == ["order_id", "sku", "quantity"]
    assert change["properties"]["quantity"]["type"] == "integer"
    assert change["properties"]["sku"]["description"].startswith("The product's sku")
    for name in TOOL_NAMES:
        assert (
            list(inspect.signature(getattr(World, name)).parameters)[1:] == definitions[name]["parameters"]["required"]
        )
        assert definitions[name]["description"]


# --- the verifier ---------------------------------------------------------------------------


def test_the_right_final_state_scores_one() -> None:
    def swap(state):  # both blue mugs of O-1002 for red ones (3 red in stock)
        state["orders"]["O-1002"]["items"] = {"MUG-RED": 2, "PEN": 1}
        state["stock"].update({"MUG-BLU": 6, "MUG-RED": 1})

    w = world()
    w.stock["MUG-RED"] = 3
    w.change_order("O-1002", "MUG-RED", 2)
    w.change_order("O-1002", "MUG-BLU", 0)
    result = verify_world(w, expected_after(swap))
    assert result == {"reward": 1.0, "state_diff": [], "num_tool_calls": 2, "num_tool_errors": 0}


def test_a_wrong_final_state_scores_zero_and_says_where() -> None:
    def cancelled(state):
        state["orders"]["O-1002"]["status"] = "cancelled"
        state["stock"].update({"MUG-BLU": 6, "PEN": 1})

    row = expected_after(cancelled)
    untouched = verify_world(world(), row)
    assert untouched["reward"] == 0.0
    assert untouched["state_diff"] == [
        "orders.O-1002.status: expected 'cancelled', got 'pending'",
        "stock.MUG-BLU: expected 6, got 4",
        "stock.PEN: expected 1, got 0",
    ]
    wrong_order = world()
    wrong_order.cancel_order("O-1004")
    assert verify_world(wrong_order, row)["reward"] == 0.0
    both = world()
    both.cancel_order("O-1002")
    both.cancel_order("O-1004")  # the right change plus one too many
    result = verify_world(both, row)
    assert (
        result["reward"] == 0.0
        and result["state_diff"][0] == "orders.O-1004.status: expected 'pending', got 'cancelled'"
    )
    right = world()
    right.cancel_order("O-1002")
    assert verify_world(right, row)["reward"] == 1.0


def test_leaving_the_world_alone_is_right_when_nothing_should_change() -> None:
    w = world()
    with pytest.raises(ToolCallError):
        w.call("cancel_order", {"order_id": "O-1003"})  # shipped: refused
    result = verify_world(w, {"expected_state": world().state()})
    assert result == {"reward": 1.0, "state_diff": [], "num_tool_calls": 1, "num_tool_errors": 1}


def test_a_row_without_an_expected_state_is_a_data_error() -> None:
    with pytest.raises(ValueError, match="expected_state"):
        verify_world(world(), {})
    with pytest.raises(ValueError, match="world"):
        World.from_seed({"orders": {}})


# --- the shipped tasks ----------------------------------------------------------------------


def shipped() -> list[dict]:
    return [json.loads(line) for line in TASKS.read_text(encoding="utf-8").splitlines()]


def play(row: dict) -> World:
    w = World.from_seed(row["world"])
    turns = json.loads(row["responses_create_params"]["metadata"]["emulator_script"])
    assert "text" in turns[-1] and all("tool_calls" in t for t in turns[:-1])
    for turn in turns[:-1]:
        for tool_call in turn["tool_calls"]:
            w.call(tool_call["name"], tool_call["arguments"])  # a scripted call never errs
    return w


def test_the_shipped_tasks_are_what_the_generator_writes() -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in generate(len(shipped()), seed=0)]
    assert TASKS.read_text(encoding="utf-8").splitlines() == lines
    assert lines[:5] != [json.dumps(row, ensure_ascii=False) for row in generate(5, seed=1)]


def test_every_scripted_sequence_reaches_reward_one() -> None:
    rows = shipped()
    assert len(rows) >= 40
    for row in rows:
        result = verify_world(play(row), row)
        assert result["reward"] == 1.0, (row["meta"]["id"], result)
        assert result["num_tool_errors"] == 0


def test_shipped_tasks_need_their_actions_and_cover_every_type() -> None:
    rows = shipped()
    leave_alone = {"change_quantity_not_enough_stock", "cancel_refused_shipped"}
    assert len({row["task_type"] for row in rows}) == 11
    for row in rows:
        idle = verify_world(World.from_seed(row["world"]), row)["reward"]
        assert idle == (1.0 if row["task_type"] in leave_alone else 0.0), row["meta"]["id"]
        params = row["responses_create_params"]
        assert params["input"][1]["content"] == row["instruction"]
        assert [t["name"] for t in params["tools"]] == list(TOOL_NAMES)
