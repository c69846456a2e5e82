"""The provider emulator's configuration: served models, policy, latency, faults
(docs/emulator.md). Every field has a default; unknown keys and wrong types are errors."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nemo_gym_cli.server import ServerConfig

__all__ = ["API_PREFIXES", "DEFAULT_MODELS", "FAULT_KINDS", "EmulatorConfig", "EmulatorModel"]

FaultKind = Literal[
    "429", "429_bare", "500", "502", "503", "524", "529", "error_200", "stall", "malformed", "drip", "cut"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_NO_FAULT = ("", "none", "ok")
_DEFAULT_FAULTS: tuple[FaultKind, ...] = ("429", "500", "502", "503")
API_PREFIXES = ("/api/v1", "/v1")


class EmulatorModel(BaseModel):
    """One model the emulator serves, with OpenRouter-like metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(description="model id as clients send it, e.g. 'openai/gpt-4o-mini'")
    name: str = Field("", description="display name in /models (defaults to the id)")
    prompt_price: float = Field(0.0, ge=0, description="USD per prompt token")
    completion_price: float = Field(0.0, ge=0, description="USD per completion token")
    context_length: int = Field(131072, gt=0, description="max prompt + max_tokens, in tokens")
    supports_tools: bool = Field(True, description="False: requests with tools get a 404")
    provider: str = Field("Emulator", description="the `provider` named in answers")
    created: int = Field(1700000000, description="`created` timestamp in /models")
    accuracy: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of tasks this model gets right: on the others (chosen per task and model,"
        " deterministically) it answers wrong (the script's `wrong` turn, another city, ...)",
    )
    latency_ms: float | None = Field(None, ge=0, description="this model's latency (default: the emulator's)")


# fmt: off
DEFAULT_MODELS = tuple(
    EmulatorModel(id=i, name=n, prompt_price=p, completion_price=c, context_length=ctx,
                  supports_tools=tools, provider=provider)
    for i, n, p, c, ctx, tools, provider in (
        ("emulator/scripted-tool-caller", "Emulator: Scripted Tool Caller",
         1e-7, 4e-7, 131072, True, "Emulator"),
        ("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", 1.5e-7, 6e-7, 128000, True, "OpenAI"),
        ("anthropic/claude-3.5-sonnet", "Anthropic: Claude 3.5 Sonnet",
         3e-6, 1.5e-5, 200000, True, "Anthropic"),
        ("meta-llama/llama-3.3-70b-instruct:free", "Meta: Llama 3.3 70B Instruct (free)",
         0.0, 0.0, 65536, True, "Together"),
        # no tool support and a small context: for the 404-tools and 400-context paths
        ("gryphe/mythomax-l2-13b", "MythoMax 13B", 6.5e-8, 6.5e-8, 4096, False, "DeepInfra"),
    )
)
# fmt: on


def _int_values(value: Any) -> Any:
    """{k: "402"} -> {k: 402}: status codes may come from YAML or the CLI as strings."""
    if not isinstance(value, dict):
        return value
    return {k: int(v) if isinstance(v, str) and v.strip().isdigit() else v for k, v in value.items()}


class EmulatorConfig(ServerConfig):
    """The emulator's switches; every field has a default (see docs/emulator.md)."""

    policy: str = Field(
        "heuristic",
        description="how unscripted requests are answered: 'heuristic' (built in) or 'module:attr', a"
        " callable (messages, tools, tool_choice, wrong) -> assistant message",
    )
    latency_ms: float = Field(0.0, ge=0, description="delay added to every completion answer")
    models: list[EmulatorModel] = Field(default_factory=lambda: list(DEFAULT_MODELS), description="the models served")
    down_models: dict[str, Literal[502, 503]] = Field(
        default_factory=dict,
        description="models that are 'down': a list (answer 502) or {model: 502|503}",
    )
    fault_rate: float = Field(0.0, ge=0, le=1, description="share of completions given a fault")
    fault_kinds: list[FaultKind] = Field(
        default_factory=lambda: list(_DEFAULT_FAULTS),
        description="faults fault_rate draws from, uniformly",
    )
    fault_seed: int = Field(0, description="seed of the fault draws: the same seed repeats a run")
    fault_schedule: dict[int, FaultKind | Literal["", "none", "ok"]] = Field(
        default_factory=dict,
        description="{n: kind} or [kind, ...]: fault of the n-th completion request (1-based);"
        " overrides fault_rate for those requests",
    )
    retry_after_seconds: float = Field(1.0, ge=0, description="Retry-After of injected 429s")
    stall_seconds: float = Field(3600.0, ge=0, description="how long a 'stall' fault sleeps")
    drip_interval_s: float = Field(
        1.0, ge=0, description="a 'drip' fault sends the answer one byte every this many seconds"
    )
    reject_keys: dict[str, Literal[401, 402]] = Field(
        default_factory=dict, repr=False, description="API keys answered 401 or 402"
    )

    @field_validator("down_models", mode="before")
    @classmethod
    def _down_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if not all(isinstance(model, str) for model in value):
                raise ValueError("a list of down models holds model ids (strings)")
            return dict.fromkeys(value, 502)
        return _int_values(value)

    @field_validator("reject_keys", mode="before")
    @classmethod
    def _reject_codes(cls, value: Any) -> Any:
        return _int_values(value)

    @field_validator("fault_kinds", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return [str(v).strip() for v in value] if isinstance(value, list | tuple) else value

    @field_validator("fault_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list | tuple):
            value = {i: kind for i, kind in enumerate(value, start=1)}
        if isinstance(value, dict):
            # keys may arrive as strings ("3"): the spec travels to the server as JSON
            return {
                (int(k) if isinstance(k, str) and k.strip().isdigit() else k): ("" if v is None else str(v))
                for k, v in value.items()
            }
        return value

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[EmulatorModel]) -> list[EmulatorModel]:
        if not value:
            raise ValueError("at least one model is needed")
        ids = [m.id for m in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"model ids must be unique, got {ids!r}")
        return value
