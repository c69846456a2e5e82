"""How the emulated models answer: scripts a task row carries, else a heuristic policy.

Pure functions, no I/O, on one conversation shape: Chat Completions messages (requests to
``/responses`` are read into it by ``messages_from_responses``, code of its own: the
emulator shares no conversion code with the adapter it tests).

**Scripts.** A task row can say what the model answers, turn by turn, in its request's
``metadata.emulator_script`` (a JSON string, or a list): each turn is ``{"text": "..."}``
(the final answer) and/or ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``, and may
carry ``"reasoning": "..."``, what the model thought first (sent as OpenRouter sends a
reasoning model's thoughts: ``message.reasoning`` and ``reasoning_details`` in chat
completions, a ``reasoning`` output item in the Responses API; a replayed recorded rollout
needs it where a verifier reads the reasoning); the n-th assistant turn of the
conversation plays the n-th entry (past the end: the last text, or "Done."). A turn may
carry ``"wrong": {...}``, what a model answers on a task it gets wrong. A turn's text and
string arguments may quote what a tool returned (``{tool_output}``, ``{tool_output.count}``,
``{tool_output:get_weather.temperature}``: ``fill_templates``), so a scripted answer is
right only when the tool is. So any environment can be tested offline to reward 1 and to
reward 0, its tools included.

**The heuristic policy** (``respond``) answers unscripted requests the way a helpful
tool-calling model plausibly would:

- last message from the user and tools offered: call the best-fitting tool, with arguments
  drawn from the user's words (``what's it like in sf?`` -> ``get_weather({"city":
  "San Francisco"})``);
- last message(s) tool outputs: a short answer quoting their key facts, no tool call;
- otherwise: a short answer that echoes the question.

The same input always gives the same output, including tool call ids. Token counts are a
cheap deterministic estimate: ceil(characters / 4), at least 1.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from nemo_gym_cli.wire import dumps, loads

__all__ = [
    "POLICIES",
    "Policy",
    "ScriptError",
    "assistant_turns",
    "choose_tool",
    "completion_tokens",
    "draw_key",
    "extract_place",
    "fill_arguments",
    "fill_templates",
    "gets_wrong",
    "load_policy",
    "messages_from_responses",
    "message_text",
    "prompt_tokens",
    "respond",
    "script_of",
    "scripted",
    "task_key",
    "truncate",
]

# Lower-case alias -> canonical city. Matched as whole words, longest alias first.
# fmt: off
_CITY_ALIASES: dict[str, str] = {
    "sf": "San Francisco", "san fran": "San Francisco", "san francisco": "San Francisco",
    "frisco": "San Francisco", "nyc": "New York", "new york city": "New York",
    "new york": "New York", "manhattan": "New York", "la": "Los Angeles",
    "l.a.": "Los Angeles", "los angeles": "Los Angeles", "dc": "Washington",
    "d.c.": "Washington", "washington dc": "Washington", "washington": "Washington",
    "philly": "Philadelphia", "philadelphia": "Philadelphia", "vegas": "Las Vegas",
    "las vegas": "Las Vegas", "chicago": "Chicago", "boston": "Boston", "seattle": "Seattle",
    "austin": "Austin", "denver": "Denver", "miami": "Miami", "toronto": "Toronto",
    "vancouver": "Vancouver", "mexico city": "Mexico City", "london": "London",
    "paris": "Paris", "berlin": "Berlin", "madrid": "Madrid", "rome": "Rome",
    "amsterdam": "Amsterdam", "lisbon": "Lisbon", "dublin": "Dublin", "vienna": "Vienna",
    "prague": "Prague", "zurich": "Zurich", "stockholm": "Stockholm", "oslo": "Oslo",
    "copenhagen": "Copenhagen", "istanbul": "Istanbul", "moscow": "Moscow", "cairo": "Cairo",
    "dubai": "Dubai", "mumbai": "Mumbai", "bombay": "Mumbai", "delhi": "Delhi",
    "new delhi": "Delhi", "bangkok": "Bangkok", "singapore": "Singapore",
    "hong kong": "Hong Kong", "hk": "Hong Kong", "beijing": "Beijing",
    "shanghai": "Shanghai", "seoul": "Seoul", "tokyo": "Tokyo", "osaka": "Osaka",
    "sydney": "Sydney", "melbourne": "Melbourne", "sao paulo": "Sao Paulo",
    "buenos aires": "Buenos Aires", "lagos": "Lagos", "nairobi": "Nairobi",
}
# fmt: on
_ALIAS_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(_CITY_ALIASES, key=len, reverse=True)) + r")(?![\w])"
)
_PLACE_PREPOSITION_RE = re.compile(r"\b(?:in|at|for|near|to|from|of)\s+((?:[A-Z][\w'.-]*)(?:\s+[A-Z][\w'.-]*)*)")
_LOWER_IN_RE = re.compile(r"\bin\s+([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)")
_PLACE_PROPS = frozenset(
    "city location place town destination region country address where locale area"
    " city_name location_name place_name".split()
)
_QUERY_PROPS = frozenset("query q question search text prompt input message topic".split())
_FILLER = frozenset("please today now tomorrow tonight right currently thanks thank you pls this week".split())
_STOPWORDS = frozenset(
    "a an the is it its it's what what's whats how how's like in on at for to of and or"
    " me my i you your please can could would will do does be with about tell get give"
    " show find there this that today now current currently".split()
)
# Words that should pull a user request towards a tool whose name/description has the key.
_CONCEPTS: dict[str, frozenset[str]] = {
    "weather": frozenset(
        "weather like temperature temp forecast rain raining sunny snow hot cold warm"
        " degrees climate umbrella wind humid".split()
    ),
    "search": frozenset("search find look lookup google".split()),
    "time": frozenset("time clock hour date".split()),
}
_WORD_RE = re.compile(r"[a-z0-9']+")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    return ""


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    """The function definition of a tool, in Chat (nested) or Responses (flat) form."""
    fn = tool.get("function")
    return fn if isinstance(fn, dict) else tool


def _tool_words(fn: dict[str, Any]) -> set[str]:
    name = str(fn.get("name", ""))
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ")
    return _words(f"{name} {fn.get('description') or ''}") - _STOPWORDS


def choose_tool(user_text: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The function definition best matching the user's words; the first tool on a tie."""
    words = _words(user_text)
    best, best_score = _function(tools[0]), 0
    for tool in tools:
        fn = _function(tool)
        tool_words = _tool_words(fn)
        score = 2 * len(words & tool_words)
        for key, triggers in _CONCEPTS.items():
            if key in tool_words:
                score += len(words & triggers)
        if score > best_score:
            best, best_score = fn, score
    return best


def extract_place(text: str) -> str | None:
    """The place a sentence talks about: a known city alias, else ``in <Capitalised Words>``."""
    match = _ALIAS_RE.search(text.lower())
    if match:
        return _CITY_ALIASES[match.group(1)]
    for match in _PLACE_PREPOSITION_RE.finditer(text):
        words = [w.rstrip(".,!?;:'") for w in match.group(1).split()]
        words = [w for w in words if w and w.lower() not in _FILLER]
        if words:
            return " ".join(words)
    for match in _LOWER_IN_RE.finditer(text):
        words = [w for w in match.group(1).split() if w not in _FILLER and w not in _STOPWORDS]
        if words:
            return " ".join(w.capitalize() for w in words)
    return None


def _phrase(text: str) -> str:
    """The user's request as a compact phrase (for query-like string arguments)."""
    phrase = " ".join(text.split()).strip(" ?!.")
    about = re.search(r"\babout\s+(.+)", phrase, flags=re.IGNORECASE)
    return about.group(1).strip() if about else phrase


def _value_for(name: str, schema: dict[str, Any], text: str) -> tuple[Any, bool]:
    """A value for one property and whether the user's words supplied it (vs a default)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    lname = name.lower()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        lower = text.lower()
        for option in enum:
            if str(option).lower() in lower:
                return option, True
        return schema.get("default", enum[0]), False
    if kind in ("integer", "number"):
        found = _NUMBER_RE.search(text)
        if found:
            value = float(found.group())
            return (int(value) if kind == "integer" else value), True
        default = schema.get("default", schema.get("minimum", 1))
        return (int(default) if kind == "integer" else default), False
    if kind == "boolean":
        return bool(schema.get("default", False)), False
    if kind == "array":
        return list(schema.get("default", [])), False
    if kind == "object":
        return dict(schema.get("default", {})), False
    if lname in _PLACE_PROPS or any(p in lname for p in ("city", "location", "place")):
        place = extract_place(text)
        if place:
            return place, True
    if "default" in schema:
        return schema["default"], False
    return _phrase(text), lname in _QUERY_PROPS


def fill_arguments(fn: dict[str, Any], user_text: str) -> dict[str, Any]:
    """Arguments for ``fn`` from the user's words, following its JSON-schema ``parameters``.

    Required properties (all of them when the schema lists none) always get a value; other
    properties only when the user's words supply one.
    """
    params = fn.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(props, dict) or not isinstance(params, dict):
        return {}
    required = params.get("required")
    required = set(props) if not isinstance(required, list) else set(required)
    args: dict[str, Any] = {}
    for name, schema in props.items():
        value, from_text = _value_for(name, schema if isinstance(schema, dict) else {}, user_text)
        if name in required or from_text:
            args[name] = value
    return args


def _call_id(name: str, arguments: str, turn: int) -> str:
    digest = hashlib.blake2s(f"{turn}:{name}:{arguments}".encode(), digest_size=12).hexdigest()
    return f"call_{digest}"


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _forced_name(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else tool_choice.get("name")
        return str(name) if name else None
    return None


def _summarise_output(text: str) -> str:
    """One sentence with the key facts of a tool's output."""
    try:
        data = loads(text)
    except ValueError:
        data = text
    if isinstance(data, dict):
        place = next((data[k] for k in ("city", "location", "place") if data.get(k)), None)
        sentence = next(
            (v for v in data.values() if isinstance(v, str) and " " in v and v[-1:] in ".!"),
            None,
        )
        if sentence:
            return sentence
        cond = next(
            (
                data[k]
                for k in (
                    "condition",
                    "conditions",
                    "weather",
                    "weather_description",
                    "description",
                    "summary",
                )
                if data.get(k)
            ),
            None,
        )
        temp = next((data[k] for k in ("temperature", "temp", "temperature_c") if k in data), None)
        if place and (cond or temp is not None):
            facts = ", ".join(str(f) for f in (cond, f"{temp} °C" if temp is not None else None) if f)
            return f"In {place} it is {facts}."
        facts = "; ".join(f"{k}: {v}" for k, v in data.items())
        return f"Here is what I found: {facts}."
    text = " ".join(str(data).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return text if text[-1:] in ".!?" else f"{text}."


def respond(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    wrong: bool = False,
) -> dict[str, Any]:
    """The heuristic assistant message for a Chat Completions conversation.

    Returns ``{"role": "assistant", "content": str}`` plus ``tool_calls`` (one call,
    arguments as a JSON string) when the policy calls a tool. ``wrong``: the model gets
    this task wrong (a place argument names another city).
    """
    last = messages[-1] if messages else {}
    role = last.get("role")
    forced = _forced_name(tool_choice)
    use_tools = bool(tools) and tool_choice != "none"
    wants_call = use_tools and (role == "user" or forced is not None or tool_choice == "required")
    if wants_call:
        user_text = _last_user_text(messages)
        if forced is not None:
            fn = next(
                (_function(t) for t in tools if _function(t).get("name") == forced),  # type: ignore[union-attr]
                {"name": forced},
            )
        else:
            fn = choose_tool(user_text, tools)  # type: ignore[arg-type]
        name = str(fn.get("name", "tool"))
        args = fill_arguments(fn, user_text)
        if wrong:
            args = {k: _other_city(v) if isinstance(v, str) and v in _CANONICAL else v for k, v in args.items()}
        arguments = dumps(args).decode()
        call = {
            "id": _call_id(name, arguments, len(messages)),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    if role == "tool":
        outputs = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            outputs.append(message_text(message.get("content")))
        outputs.reverse()
        return {"role": "assistant", "content": " ".join(_summarise_output(o) for o in outputs)}
    question = " ".join(_last_user_text(messages).split())
    if not question:
        return {"role": "assistant", "content": "Hello! How can I help?"}
    if len(question) > 200:
        question = question[:197] + "..."
    return {"role": "assistant", "content": f'You asked: "{question}" This is a scripted answer.'}


# --- token estimates ------------------------------------------------------------------------


def _ceil4(chars: int) -> int:
    return max(1, -(-chars // 4))


def prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None) -> int:
    """ceil(chars / 4) over message text, tool-call names and arguments, and the tools' JSON."""
    chars = len(dumps(tools)) if tools else 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(message_text(content))
        for call in message.get("tool_calls") or ():
            fn = (call.get("function") if isinstance(call, dict) else None) or {}
            chars += len(str(fn.get("name") or "")) + len(str(fn.get("arguments") or ""))
    return _ceil4(chars)


def completion_tokens(message: dict[str, Any]) -> int:
    """ceil(chars / 4) over an answer's reasoning, content and its tool calls' names and
    arguments (reasoning is billed as output, as OpenRouter bills it)."""
    chars = len(message.get("content") or "") + len(message.get("reasoning") or "")
    for call in message.get("tool_calls") or ():
        chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return _ceil4(chars)


def reasoning_tokens(message: dict[str, Any]) -> int:
    """ceil(chars / 4) of an answer's reasoning; 0 without."""
    reasoning = message.get("reasoning")
    return _ceil4(len(reasoning)) if reasoning else 0


def truncate(message: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The answer cut to ``max_tokens`` (4 characters a token), as a provider cuts it: the
    reasoning comes first, tool call arguments may end mid-JSON."""
    budget = max_tokens * 4
    reasoning = (message.get("reasoning") or "")[:budget]
    budget -= len(reasoning)
    content = (message.get("content") or "")[: max(0, budget)]
    out: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        out["reasoning"] = reasoning
    budget -= len(content)
    calls = []
    for call in message.get("tool_calls") or ():
        if budget <= 0:
            break
        fn = call["function"]
        arguments = fn["arguments"][: max(0, budget - len(fn["name"]))]
        budget -= len(fn["name"]) + len(arguments)
        calls.append({**call, "function": {"name": fn["name"], "arguments": arguments}})
    if calls:
        out["tool_calls"] = calls
    return out


# --- wrong answers ----------------------------------------------------------------------------

_CANONICAL = sorted(set(_CITY_ALIASES.values()))


def _other_city(city: str) -> str:
    """A different city, the same one every time (a model that confuses places)."""
    return _CANONICAL[(_CANONICAL.index(city) + 7) % len(_CANONICAL)]


def task_key(messages: list[dict[str, Any]]) -> str:
    """What identifies the task of a conversation: its first user message."""
    for message in messages:
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def draw_key(messages: list[dict[str, Any]], seed: Any = None, temperature: Any = None) -> str:
    """What a model's draw on a request depends on (``gets_wrong``'s key): the task; then,
    sampling as a model does, the request's ``seed`` (each seed its own draw: repeats vary)
    and its ``temperature`` (another temperature, other draws). At temperature 0 a model is
    greedy: the seed is ignored and every sample of a task is answered alike."""
    key = task_key(messages)
    greedy = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature <= 0
    if seed is not None and not greedy:
        key += f"\x00seed={seed}"
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0:
        key += f"\x00temperature={float(temperature):g}"
    return key


def gets_wrong(model_id: str, accuracy: float, key: str) -> bool:
    """Does a model of this ``accuracy`` get the task ``key`` wrong? Deterministic per model
    and task, and over many tasks wrong on a share of ``1 - accuracy`` of them."""
    if accuracy >= 1:
        return False
    digest = hashlib.blake2s(f"{model_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 >= accuracy


# --- scripts ----------------------------------------------------------------------------------


class ScriptError(ValueError):
    """A request's ``metadata.emulator_script`` is malformed (the message says how)."""


def script_of(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The script a request carries in ``metadata.emulator_script``, or None."""
    metadata = body.get("metadata")
    raw = metadata.get("emulator_script") if isinstance(metadata, dict) else None
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = loads(raw)
        except ValueError as exc:
            raise ScriptError(f"metadata.emulator_script is not valid JSON ({exc})") from None
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        raise ScriptError("metadata.emulator_script must be a non-empty list of turns ({text} or {tool_calls})")
    return raw


def assistant_turns(messages: list[dict[str, Any]]) -> int:
    """How many times the assistant has spoken in the conversation so far."""
    return sum(1 for m in messages if m.get("role") == "assistant")


def scripted(script: list[dict[str, Any]], messages: list[dict[str, Any]], wrong: bool = False) -> dict[str, Any]:
    """The assistant message the script gives for this point of the conversation."""
    turn = assistant_turns(messages)
    if turn < len(script):
        entry = script[turn]
    else:  # past the end: answer with the script's last words
        last_text = next((t.get("text") for t in reversed(script) if isinstance(t.get("text"), str)), None)
        entry = {"text": last_text or "Done."}
    if wrong:
        alternative = entry.get("wrong")
        if isinstance(alternative, dict):
            entry = alternative
        elif "tool_calls" not in entry:
            entry = {"text": "I am not sure of the answer."}
    text = entry.get("text")
    if text is not None and not isinstance(text, str):
        raise ScriptError(f"emulator_script turn {turn}: text must be a string, got {type(text).__name__}")
    if text and "{tool_output" in text:
        text = fill_templates(text, messages)
    message: dict[str, Any] = {"role": "assistant", "content": text or ""}
    reasoning = entry.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        raise ScriptError(f"emulator_script turn {turn}: reasoning must be a string, got {type(reasoning).__name__}")
    if reasoning:
        message["reasoning"] = reasoning
    calls = entry.get("tool_calls")
    if calls:
        if not isinstance(calls, list):
            raise ScriptError(f"emulator_script turn {turn}: tool_calls must be a list")
        message["tool_calls"] = []
        for i, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ScriptError(f"emulator_script turn {turn}: tool_calls[{i}] needs a name")
            arguments = call.get("arguments", {})
            if "{tool_output" in (arguments if isinstance(arguments, str) else dumps(arguments).decode()):
                arguments = _fill_value(arguments, messages)
            arguments = arguments if isinstance(arguments, str) else dumps(arguments).decode()
            message["tool_calls"].append(
                {
                    "id": _call_id(call["name"], arguments, len(messages) * 100 + i),
                    "type": "function",
                    "function": {"name": call["name"], "arguments": arguments},
                }
            )
    return message


# --- what a tool returned, quoted by a script ------------------------------------------------

#: ``{tool_output}``, ``{tool_output.a.0.b}``, ``{tool_output:name}``, ``{tool_output:name.a}``
_TEMPLATE = re.compile(r"\{tool_output(?::(?P<name>[A-Za-z_][\w-]*))?(?P<path>(?:\.[\w-]+)*)\}")
#: What a placeholder becomes when the conversation holds no such output (no digits: a
#: verifier reading numbers finds none).
MISSING = "(no such tool output)"
_ABSENT = object()


def _tool_output(messages: list[dict[str, Any]], name: str | None) -> Any:
    """The last tool output of the conversation (of the tool ``name``, if given), parsed as
    JSON when it is JSON; ``_ABSENT`` when there is none."""
    names: dict[Any, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                fn = call.get("function") or {}
                names[call.get("id")] = str(fn.get("name") or "") if isinstance(fn, dict) else ""
    for message in reversed(messages):
        if message.get("role") != "tool":
            continue
        if name is not None and names.get(message.get("tool_call_id")) != name:
            continue
        text = message_text(message.get("content"))
        try:
            return loads(text)
        except ValueError:
            return text
    return _ABSENT


def _lookup(messages: list[dict[str, Any]], match: re.Match[str]) -> Any:
    value = _tool_output(messages, match.group("name"))
    for step in match.group("path").split(".")[1:]:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.lstrip("-").isdigit() and -len(value) <= int(step) < len(value):
            value = value[int(step)]
        else:
            return _ABSENT
    return value


def _as_text(value: Any) -> str:
    if value is _ABSENT:
        return MISSING
    return value if isinstance(value, str) else dumps(value).decode()


def fill_templates(text: str, messages: list[dict[str, Any]]) -> str:
    """``text`` with each ``{tool_output...}`` placeholder replaced by what a tool returned in
    ``messages``: ``{tool_output}`` the last output, ``{tool_output:<tool>}`` the last of
    that tool, ``.field`` / ``.0`` a path into it (JSON). A placeholder with nothing to
    quote becomes ``(no such tool output)``: the answer is wrong, as it should be."""
    return _TEMPLATE.sub(lambda m: _as_text(_lookup(messages, m)), text)


def _fill_value(value: Any, messages: list[dict[str, Any]]) -> Any:
    """Placeholders filled in a tool call's arguments: a string that is one placeholder
    becomes the value itself (a number stays a number), others are filled as text."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value)
        if whole is not None:
            found = _lookup(messages, whole)
            return MISSING if found is _ABSENT else found
        return fill_templates(value, messages) if "{tool_output" in value else value
    if isinstance(value, dict):
        return {k: _fill_value(v, messages) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_value(v, messages) for v in value]
    return value


# --- policies ---------------------------------------------------------------------------------

#: A policy: (messages, tools, tool_choice, wrong) -> assistant message.
Policy = Callable[[list[dict[str, Any]], "list[dict[str, Any]] | None", Any, bool], dict[str, Any]]
POLICIES: dict[str, Policy] = {"heuristic": respond}


def load_policy(name: str) -> Policy:
    """A built-in policy by name, or ``module:attr`` (a callable with ``respond``'s shape)."""
    if name in POLICIES:
        return POLICIES[name]
    module, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(f"unknown policy {name!r}: use one of {', '.join(POLICIES)} or 'module:callable'")
    import importlib

    found = getattr(importlib.import_module(module), attr, None)
    if not callable(found):
        raise ValueError(f"policy {name!r}: {module} has no callable {attr!r}")
    return found  # type: ignore[no-any-return]


# --- the Responses API, read into messages ----------------------------------------------------


def messages_from_responses(params: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses request's ``instructions`` and ``input`` as chat messages (what the policy
    reads). Raises ``ValueError`` naming what it cannot read."""
    messages: list[dict[str, Any]] = []
    instructions = params.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = params.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise ValueError(f"input must be a string or a list of items, got {type(items).__name__}")
    calls_turn: dict[str, Any] | None = None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"input[{i}] must be an object, got {type(item).__name__}")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ValueError(f"input[{i}] has role {role!r}")
            messages.append(
                {"role": "system" if role == "developer" else role, "content": message_text(item.get("content"))}
            )
            calls_turn = messages[-1] if role == "assistant" else None
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
            }
            if calls_turn is None:
                calls_turn = {"role": "assistant", "content": ""}
                messages.append(calls_turn)
            calls_turn.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else message_text(output),
                }
            )
            calls_turn = None
        elif kind != "reasoning":
            raise ValueError(f"input[{i}] has type {kind!r}: send message, function_call or function_call_output items")
    if not messages:
        raise ValueError("the request has no input: send at least one message")
    return messages
