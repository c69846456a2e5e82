"""What the report reads of one output row, and how it reads it fast and defensively.

A row is 1-2 KB of JSON, nearly all of it the trajectory, and the report needs a dozen
small fields. ``msgspec`` decodes straight into ``Row``, a struct of just those fields,
skipping the rest without building Python objects for it: about 2.5x faster than a full
parse, which is most of the report's time on a large sweep. Every field is typed ``Any``
(or an optional struct), so odd values never reject a row; a row whose *shape* is odd (a
``response`` that is a string, a ``usage`` that is a list) fails the struct and takes the
slow path: a full parse, then ``loose_row`` picks out the same fields by hand.

Also here: a task's identity for rows without ``_ng_task_index`` (NeMo Gym 0.2.1), and
whether a served model is the requested one (``same_model``).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import msgspec
import orjson

__all__ = ["Row", "RowReader", "input_key", "number", "count", "dotted", "same_model"]


class Usage(msgspec.Struct):
    input_tokens: Any = None
    output_tokens: Any = None
    cost: Any = None


class Response(msgspec.Struct):
    model: Any = None
    provider: Any = None
    usage: Usage | None = None


class Params(msgspec.Struct):
    input: msgspec.Raw = msgspec.Raw()  # empty: no input (``Raw | None`` would reject any input)


class Row(msgspec.Struct):
    """The fields of an output row the report uses (JSON names in ``name=``)."""

    task_index: Any = msgspec.field(default=None, name="_ng_task_index")
    rollout_index: Any = msgspec.field(default=None, name="_ng_rollout_index")
    reward: Any = None
    response: Response | None = None
    params: Params | None = msgspec.field(default=None, name="responses_create_params")
    variant: Any = msgspec.field(default=None, name="_ng_variant")
    latency: Any = msgspec.field(default=None, name="_ng_latency_s")
    requested: Any = msgspec.field(default=None, name="_ng_requested_model")
    #: the value at the top of the ``group_by`` path (a subclass declares it)
    group_root: Any = None


_ROW_FIELDS = {"_ng_task_index", "_ng_rollout_index", "reward", "response", "responses_create_params"}
_ROW_FIELDS |= {"_ng_variant", "_ng_latency_s", "_ng_requested_model"}


class NotAnObject(ValueError):
    """The line is JSON, but not an object."""


class RowReader:
    """Decodes lines into ``Row``s; ``group_by`` (a dotted path) fills ``group_root``."""

    def __init__(self, group_by: str) -> None:
        self.group_parts = group_by.split(".") if group_by else []
        top = self.group_parts[0] if self.group_parts else ""
        self.slow_only = top in _ROW_FIELDS  # a path into a field the struct narrows: parse fully
        row_type: type[Any] = Row
        if top and not self.slow_only:
            field = msgspec.field(default=None, name=top)
            row_type = msgspec.defstruct("GroupRow", [("group_root", Any, field)], bases=(Row,))
        self._decode = msgspec.json.Decoder(row_type).decode
        self.row_type = row_type

    def read(self, line: bytes) -> Row:
        """The line's ``Row``; raises ``ValueError`` (not JSON) or ``NotAnObject``."""
        if not self.slow_only:
            try:
                return self._decode(line)
            except msgspec.ValidationError:
                pass  # a field of an unexpected shape: the slow path below
            except msgspec.DecodeError:
                raise ValueError("not valid JSON") from None
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError("not valid JSON") from None
        if type(row) is not dict:
            raise NotAnObject(f"a JSON {type(row).__name__}, not an object")
        return self.loose_row(row)

    def loose_row(self, row: dict[str, Any]) -> Row:
        """The same fields as the fast path, picked from a fully parsed row of any shape."""
        response = row.get("response")
        response = response if type(response) is dict else {}
        usage = response.get("usage")
        usage = usage if type(usage) is dict else {}
        params = row.get("responses_create_params")
        params = params if type(params) is dict else {}
        has_input = "input" in params
        return self.row_type(
            task_index=row.get("_ng_task_index"),
            rollout_index=row.get("_ng_rollout_index"),
            reward=row.get("reward"),
            response=Response(
                model=response.get("model"),
                provider=response.get("provider"),
                usage=Usage(usage.get("input_tokens"), usage.get("output_tokens"), usage.get("cost")),
            ),
            params=Params(msgspec.Raw(orjson.dumps(params["input"]))) if has_input else None,
            variant=row.get("_ng_variant"),
            latency=row.get("_ng_latency_s"),
            requested=row.get("_ng_requested_model"),
            group_root=row.get(self.group_parts[0]) if self.group_parts else None,
        )

    def group_value(self, row: Row) -> Any:
        value = row.group_root
        for part in self.group_parts[1:]:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value


def input_key(row: Row) -> str | None:
    """A NeMo Gym row's task identity: a hash of ``responses_create_params.input``
    (canonical JSON, so key order and spacing do not matter); None without an input."""
    if row.params is None or not len(row.params.input):
        return None
    canonical = orjson.dumps(orjson.loads(bytes(row.params.input)), option=orjson.OPT_SORT_KEYS)
    return "h:" + hashlib.blake2b(canonical, digest_size=8).hexdigest()


def number(value: Any) -> float:
    """A finite number as float, else NaN (missing, a string, a bool, inf)."""
    if (type(value) is float or type(value) is int) and math.isfinite(value):
        return float(value)
    return math.nan


def count(value: Any) -> int:
    """A non-negative count (below 2**62), else -1."""
    return int(value) if (type(value) is int or type(value) is float) and 0 <= value < 1 << 62 else -1


def dotted(row: dict[str, Any], parts: list[str]) -> Any:
    value: Any = row
    for part in parts:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def _model_key(name: str) -> str:
    key = name.strip().lower()
    prefix, sep, rest = key.partition(":")
    if sep and "/" not in prefix and "/" in rest:  # a gateway prefix: openrouter:openai/gpt-4o
        key = rest
    base, sep, suffix = key.rpartition(":")
    if sep and "/" not in suffix:  # an OpenRouter variant: :free, :nitro, :floor, :beta
        key = base
    return _DATE_SUFFIX.sub("", key)  # a dated snapshot of the same model: gpt-4o-2024-08-06


def same_model(requested: str, served: str) -> bool:
    """Whether ``served`` is the model that was ``requested``, ignoring gateway prefixes,
    OpenRouter variant suffixes, dated snapshots and a missing vendor prefix."""
    a, b = _model_key(requested), _model_key(served)
    if a == b:
        return True
    if ("/" in a) != ("/" in b):
        return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]
    return False
