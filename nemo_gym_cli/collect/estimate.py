"""``+dry_run``: what a run would cost, from a pilot of a few real rollouts per variant.

The pilot runs ``+dry_run_rows`` rollouts of each variant (real calls: they cost what they
cost, and their rows are kept in ``<output stem>_dry_run.jsonl``, never in the output), then
extrapolates to the whole run: tokens per rollout times rollouts, and the cost two ways:
what the provider reported for the pilot, per rollout, and the pilot's tokens at the
catalogue's prices (``GET /models``, as ``ng models`` shows them). The two disagree when a
provider bills differently from its list price (cached tokens, reasoning tokens, a fallback
model); both are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemo_gym_cli.collect.metrics import CollectionMetrics
from nemo_gym_cli.collect.model_servers import model_server_of, served
from nemo_gym_cli.config import GlobalConfig, substitute_urls
from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.providers.catalogue import ModelInfo, fetch_models
from nemo_gym_cli.providers.model_ids import same_model
from nemo_gym_cli.providers.upstream import AiohttpWire, Upstream

__all__ = ["Estimate", "catalogue", "estimate", "format_estimates"]


@dataclass(frozen=True)
class Estimate:
    variant: str
    model: str | None
    pilot_rollouts: int
    pilot_failed: int
    rollouts: int  # the whole run's
    input_tokens_per_rollout: float
    output_tokens_per_rollout: float
    reported_cost_per_rollout: float
    catalogue_cost_per_rollout: float | None

    @property
    def tokens(self) -> tuple[float, float]:
        return self.input_tokens_per_rollout * self.rollouts, self.output_tokens_per_rollout * self.rollouts

    @property
    def reported_cost(self) -> float:
        return self.reported_cost_per_rollout * self.rollouts

    @property
    def catalogue_cost(self) -> float | None:
        per = self.catalogue_cost_per_rollout
        return None if per is None else per * self.rollouts

    def as_dict(self) -> dict[str, Any]:
        tokens_in, tokens_out = self.tokens
        return {
            "variant": self.variant,
            "model": self.model,
            "pilot_rollouts": self.pilot_rollouts,
            "pilot_failed": self.pilot_failed,
            "rollouts": self.rollouts,
            "input_tokens": round(tokens_in),
            "output_tokens": round(tokens_out),
            "cost_usd_reported_basis": round(self.reported_cost, 6),
            "cost_usd_catalogue_basis": None if self.catalogue_cost is None else round(self.catalogue_cost, 6),
        }


def _price_of(model: str | None, catalogue: list[ModelInfo]) -> ModelInfo | None:
    if not model:
        return None
    for info in catalogue:
        if info.id == model:
            return info
    return next((info for info in catalogue if same_model(info.id, model)), None)


def estimate(
    variant: str, model: str | None, metrics: CollectionMetrics, rollouts: int, catalogue: list[ModelInfo]
) -> Estimate:
    """Extrapolate the pilot in ``metrics`` to ``rollouts`` rollouts."""
    done = max(1, metrics.succeeded + metrics.failed)
    tokens_in = metrics.input_tokens / done
    tokens_out = metrics.output_tokens / done
    info = _price_of(model, catalogue)
    catalogue_cost = None
    if info is not None and info.prompt_price is not None and info.completion_price is not None:
        catalogue_cost = (tokens_in * info.prompt_price + tokens_out * info.completion_price) / 1_000_000
    return Estimate(
        variant=variant,
        model=model,
        pilot_rollouts=metrics.succeeded + metrics.failed,
        pilot_failed=metrics.failed,
        rollouts=rollouts,
        input_tokens_per_rollout=tokens_in,
        output_tokens_per_rollout=tokens_out,
        reported_cost_per_rollout=metrics.total_cost / done,
        catalogue_cost_per_rollout=catalogue_cost,
    )


def format_estimates(estimates: list[Estimate]) -> str:
    rows = [("VARIANT", "MODEL", "PILOT", "ROLLOUTS", "TOKENS IN", "TOKENS OUT", "$ (REPORTED)", "$ (CATALOGUE)")]
    for e in estimates:
        tokens_in, tokens_out = e.tokens
        catalogue = "?" if e.catalogue_cost is None else f"{e.catalogue_cost:.4f}"
        pilot = f"{e.pilot_rollouts}" + (f" ({e.pilot_failed} failed)" if e.pilot_failed else "")
        rows.append(
            (
                e.variant or "-",
                e.model or "(config)",
                pilot,
                str(e.rollouts),
                f"{tokens_in:,.0f}",
                f"{tokens_out:,.0f}",
                f"{e.reported_cost:.4f}",
                catalogue,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows]
    total_reported = sum(e.reported_cost for e in estimates)
    known = [e.catalogue_cost for e in estimates if e.catalogue_cost is not None]
    lines.append(
        f"total: ${total_reported:.4f} at the pilot's reported cost"
        + (f", ${sum(known):.4f} at catalogue prices" if len(known) == len(estimates) else "")
        + " (USD; estimates from the pilot's tokens per rollout)"
    )
    return "\n".join(lines)


async def catalogue(
    config: GlobalConfig, agent: str | None, urls: dict[str, str], note: Callable[[str], None]
) -> list[ModelInfo]:
    """The ``/models`` (prices) of the upstream the agent's model server says it forwards to;
    none when it names no upstream (``note`` says why when the upstream does not answer)."""
    target = model_server_of(config, agent)
    declared = served(target) if target is not None else None
    if target is None or declared is None or declared.base_url is None:
        return []
    base_url = str(substitute_urls(declared.base_url, urls, target.where))
    upstream = Upstream(base_url, declared.api_key, "")
    try:
        async with AiohttpWire.open(pool_size=2, connect_timeout_s=10.0, read_timeout_s=30.0) as wire:
            entries = await fetch_models(wire, upstream, headers=declared.headers)
    except NemoGymError as exc:
        note(f"note: no catalogue prices ({exc})")
        return []
    return [ModelInfo.parse(e) for e in entries]
