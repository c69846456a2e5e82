"""What a provider's error means and what to do about it: the one classifier.

``classify_error(status, error, upstream)`` turns an HTTP status and/or an error object
(OpenRouter's ``{"code", "message", "metadata": {"error_type"}, "availability"}``, OpenAI's
``{"type", "code"}``, vLLM's flat ``{"object": "error"}``) into an ``UpstreamError`` with a
``kind``, ``retryable`` and a message that says what to do. The adapter's client, the
conversion functions, the start-up check and ``ng models`` all use it, so one status never
means two things.

Retryable: 408, 409, 425, 429 and 5xx (``errors.RETRYABLE_STATUS``); an error without a
status by its type (rate limits, overload, unavailability, timeouts) or OpenRouter's
``availability.retryable``. Never: 400, 401, 402, 403, 404, 413.
"""

from __future__ import annotations

from typing import Any, Protocol

from nemo_gym_cli.errors import RETRYABLE_STATUS, UpstreamError
from nemo_gym_cli.redaction import redact_url

__all__ = ["classify_error", "error_object", "model_unavailable"]

# OpenRouter's error.metadata.error_type values (and OpenAI's string codes) worth a retry.
_RETRYABLE_TYPES = frozenset(
    ("rate_limit_exceeded", "provider_overloaded", "provider_unavailable", "timeout", "server_error")
)
_KIND_BY_STATUS = {
    400: "bad_request",
    403: "forbidden",
    408: "timeout",
    413: "context_length",
    429: "rate_limit",
}
_KIND_BY_TYPE = {"rate_limit_exceeded": "rate_limit", "timeout": "timeout"}


class Endpoint(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    def scrub(self, text: str) -> str: ...


class _Unknown:
    base_url = "the upstream"
    model = "the requested model"
    api_key = ""

    def scrub(self, text: str) -> str:
        return text


def error_object(body: Any) -> dict[str, Any] | None:
    """The error object of a body that is an error (any status), else None."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    if body.get("object") == "error":  # vLLM's older, flat error body
        return body
    return None


def model_unavailable(upstream: Endpoint, detail: str = "", setting: str = "+policy_model_name") -> UpstreamError:
    """``setting``: the override that sets the model in the user's config."""
    return UpstreamError(
        f"model {upstream.model!r} is not available at {redact_url(upstream.base_url)}; list the models it "
        f"offers with `ng models`, then set {setting}=<id>{detail}",
        status=404,
        kind="model_not_found",
    )


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def classify_error(
    status: int | None, error: Any, upstream: Endpoint | None = None, *, tools_sent: bool = False
) -> UpstreamError:
    """A provider error as an ``UpstreamError`` whose message says what to do. ``status`` is
    None when the error came in a 200 answer (OpenRouter does that)."""
    up: Endpoint = upstream if upstream is not None else _Unknown()
    err: dict[str, Any] = error if isinstance(error, dict) else {}
    message = up.scrub(str(err.get("message") or error or "no error message")[:500])
    meta: dict[str, Any] = err["metadata"] if isinstance(err.get("metadata"), dict) else {}
    availability: dict[str, Any] = err["availability"] if isinstance(err.get("availability"), dict) else {}
    code = _int(err.get("code"))
    if code is None:
        code = _int(availability.get("code"))
    code = code or status
    names = (meta.get("error_type"), err.get("code"), err.get("type"))
    error_type = next((n for n in names if isinstance(n, str) and n and not n.isdigit()), "")
    base, model = redact_url(up.base_url), up.model
    low = message.lower()
    said = f" (it answered: {message!r})"
    where = f" from {meta['provider_name']}" if isinstance(meta.get("provider_name"), str) else ""

    if code == 401 or error_type in ("authentication_error", "invalid_api_key"):
        hint = "" if up.api_key or upstream is None else " (no key is set)"
        return UpstreamError(
            f"the API key was rejected: set policy_api_key in env.yaml (or openai_api_key of the "
            f"model server) to a key {base} accepts{hint}{said}",
            status=401,
            kind="auth",
        )
    if code == 402 or error_type == "insufficient_quota":
        return UpstreamError(
            f"out of credits at {base}: add credits to the account (OpenRouter: "
            "https://openrouter.ai/settings/credits) or pick a free model "
            f"(`ng models +max_price=0`){said}",
            status=402,
            kind="credits",
        )
    if code == 413 or "context length" in low or "context_length" in error_type or "maximum context" in low:
        return UpstreamError(
            f"the request exceeds the context length of model {model!r} at {base}: shorten the "
            "input, lower max_output_tokens or max_steps, or pick a model with a longer context "
            f"(`ng models` lists them){said}",
            status=code if code and 400 <= code < 500 else 400,
            kind="context_length",
        )
    if "tool" in low and "support" in low:
        sends = ", and this request sends tools" if tools_sent else ""
        return UpstreamError(
            f"model {model!r} at {base} does not support tool calls{sends}: pick one that does "
            f"(`ng models +tools=true`){said}",
            status=404,
            kind="tools_unsupported",
        )
    if code == 404 and "no endpoints found" in low:
        return UpstreamError(
            f"no provider of model {model!r} at {base} can serve this request{said}: check the "
            "routing preferences (extra_body.provider) and the account's privacy settings, or "
            "pick another model (`ng models`)",
            status=404,
            kind="model_not_found",
        )
    if code == 404 or "not a valid model" in low or error_type == "model_not_found":
        return model_unavailable(up, said)
    if code == 403:
        return UpstreamError(
            f"{base} refused the request (403){where}{said}: moderation flagged the input, or the "
            "key lacks a permission or hit its limit; retrying will not help",
            status=403,
            kind="forbidden",
        )
    if code is None:
        retryable = bool(availability.get("retryable", error_type in _RETRYABLE_TYPES or not error_type))
        kind = _KIND_BY_TYPE.get(error_type) or ("rate_limit" if "rate" in error_type else "server")
    else:
        retryable = code in RETRYABLE_STATUS or code >= 500
        kind = (
            _KIND_BY_STATUS.get(code)
            or _KIND_BY_TYPE.get(error_type)
            or ("rate_limit" if "rate" in error_type else "server" if retryable else "bad_request")
        )
    if status is None:  # the error came in a 200 answer
        what = f"reported {code} in a 200 answer" if code else "reported an error in a 200 answer"
    else:
        what = f"answered {code}"
    return UpstreamError(f"{base} {what}{where}: {message}", status=code, kind=kind, retryable=retryable)
