"""The model provider, seen from the ``openai_model`` adapter: one call, one answer or one error.

``UpstreamClient.post`` sends a request to an OpenAI-compatible base URL (OpenRouter, a
gateway, vLLM, the emulator) and returns the decoded JSON body, or raises ``UpstreamError``
with a message the user can act on. On the way it:

- caps concurrent upstream requests (a semaphore), so thousands of rollouts do not become
  thousands of simultaneous provider calls;
- retries 408, 429, 5xx, connection errors, timeouts, malformed bodies and errors reported
  inside a 200 body, with exponential backoff and full jitter, honouring ``Retry-After``
  (seconds or an HTTP date), up to ``max_attempts`` in all; never retries 400/401/402/403/404;
- moves to the next alternative upstream when one is down (connection error or 5xx);
- logs each retry with attempt number, target and reason, never the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import httpx

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.wire import dumps, loads

__all__ = ["Upstream", "UpstreamClient", "classify_error", "parse_retry_after"]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_KIND_BY_STATUS = {
    400: "bad_request",
    401: "auth",
    402: "credits",
    403: "forbidden",
    404: "model_not_found",
    408: "timeout",
    413: "context_length",
    429: "rate_limit",
}


@dataclass(frozen=True)
class Upstream:
    """One OpenAI-compatible endpoint: base URL, key and model name (passed through as is)."""

    base_url: str
    api_key: str
    model: str

    def __repr__(self) -> str:  # never show the key
        return f"Upstream(base_url={self.base_url!r}, model={self.model!r})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_error(status: int | None, error: Any, upstream: Upstream, *, tools_sent: bool = False) -> UpstreamError:
    """Turn a provider error (HTTP status and/or OpenRouter error object) into an UpstreamError
    whose message says what to do."""
    err = error if isinstance(error, dict) else {}
    message = str(err.get("message") or error or "no error message")[:500]
    code = err.get("code")
    code = code if isinstance(code, int) else status
    meta = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
    error_type = str(meta.get("error_type") or err.get("type") or "")
    availability = err.get("availability") if isinstance(err.get("availability"), dict) else {}
    base, model = upstream.base_url, upstream.model
    low = message.lower()

    if code == 401 or error_type in ("authentication_error", "invalid_api_key"):
        return UpstreamError(
            f"the API key was rejected by {base} ({message}): set policy_api_key in env.yaml "
            "(or the model server's openai_api_key)",
            status=401,
            kind="auth",
        )
    if code == 402:
        return UpstreamError(
            f"out of credits at {base} ({message}): add credits to the account or use a :free model",
            status=402,
            kind="credits",
        )
    if "context length" in low or "context_length" in error_type or "maximum context" in low:
        return UpstreamError(
            f"the request exceeds the context length of model {model!r} ({message}): shorten the "
            "input, lower max_output_tokens or max_steps, or pick a model with a longer context",
            status=code or 400,
            kind="context_length",
        )
    if code == 404 and ("tool use" in low or "tools" in low) and tools_sent:
        return UpstreamError(
            f"model {model!r} at {base} does not support tool calls ({message}): pick one that does; "
            "list them with `ng models --tools`",
            status=404,
            kind="tools_unsupported",
        )
    if code == 404 or "not a valid model" in low:
        return UpstreamError(
            f"model {model!r} is not available at {base} ({message}); list the models it offers "
            "with `ng models`, then set +policy_model_name=<id>",
            status=404,
            kind="model_not_found",
        )
    retryable = bool(
        code is None and availability.get("retryable", True) or (code is not None and (code in RETRYABLE_STATUS or code >= 500))
    )
    kind = _KIND_BY_STATUS.get(code or 0) or ("rate_limit" if "rate" in error_type else "server" if retryable else "bad_request")
    return UpstreamError(f"{base} answered {code or 'an error'}: {message}", status=code, kind=kind, retryable=retryable)


class UpstreamClient:
    """Posts JSON to a provider with retries, failover and a concurrency cap."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        upstreams: list[Upstream],
        *,
        max_attempts: int = 6,
        max_concurrency: int = 64,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.http = http
        self.upstreams = upstreams
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self._gate = asyncio.Semaphore(max_concurrency)
        self._headers = [
            {**(headers or {}), "authorization": f"Bearer {u.api_key}", "content-type": "application/json"}
            for u in upstreams
        ]
        self._current = 0  # index of the upstream in use; moves on when one is down
        self.retries = 0  # total retries made (for stats)

    @property
    def upstream(self) -> Upstream:
        return self.upstreams[self._current]

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        tools_sent: bool = False,
        parse: Callable[[dict[str, Any]], Any] | None = None,
    ) -> tuple[Any, Upstream]:
        """POST ``body`` (``model`` filled per upstream) to ``<base>/<path>``; returns the answer
        (passed through ``parse``, whose retryable ``UpstreamError`` is retried like any other)
        and the upstream that gave it. Raises ``UpstreamError``."""
        last: UpstreamError | None = None
        for attempt in range(1, self.max_attempts + 1):
            index = self._current
            upstream = self.upstreams[index]
            wait: float | None = None
            try:
                data = await self._once(index, upstream, path, body, tools_sent)
                if parse is None:
                    return data, upstream
                try:
                    return parse(data), upstream
                except UpstreamError as exc:
                    if not exc.retryable:
                        raise
                    raise _Retry(exc) from None
            except _Retry as retry:
                last, wait = retry.error, retry.wait
                if retry.down and len(self.upstreams) > 1 and self._current == index:
                    self._current = (index + 1) % len(self.upstreams)
            if attempt == self.max_attempts:
                break
            delay = wait if wait is not None else random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))
            delay = min(delay, self.max_retry_after_s)
            self.retries += 1
            log.warning(
                "upstream %s attempt %d/%d failed: %s; retrying in %.2f s%s",
                upstream.base_url,
                attempt,
                self.max_attempts,
                last,
                delay,
                f" via {self.upstream.base_url}" if self.upstream is not upstream else "",
            )
            await asyncio.sleep(delay)
        assert last is not None
        raise UpstreamError(
            f"{last} (gave up after {self.max_attempts} attempts)", status=last.status, kind=last.kind, retryable=True
        )

    async def _once(self, index: int, upstream: Upstream, path: str, body: dict[str, Any], tools_sent: bool) -> dict[str, Any]:
        url = f"{upstream.base_url.rstrip('/')}/{path}"
        payload = dumps({**body, "model": upstream.model})
        async with self._gate:
            try:
                resp = await self.http.post(url, content=payload, headers=self._headers[index])
            except httpx.TimeoutException as exc:
                raise _Retry(
                    UpstreamError(f"{url} timed out ({type(exc).__name__})", kind="timeout", retryable=True)
                ) from None
            except httpx.TransportError as exc:
                raise _Retry(
                    UpstreamError(f"cannot reach {url}: {exc!r}", kind="connection", retryable=True), down=True
                ) from None
        status = resp.status_code
        try:
            data = loads(resp.content)
        except ValueError:
            data = None
        if status >= 400 or data is None or (isinstance(data, dict) and "error" in data and not data.get("choices") and not data.get("output")):
            if data is None and status < 400:
                error = UpstreamError(
                    f"{url} answered {status} with a body that is not JSON: {resp.content[:200]!r}",
                    status=status,
                    kind="bad_response",
                    retryable=True,
                )
            else:
                err_obj = data.get("error") if isinstance(data, dict) else resp.text[:300]
                error = classify_error(status if status >= 400 else None, err_obj, upstream, tools_sent=tools_sent)
            if not error.retryable:
                raise error
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
            if retry_after is None and isinstance(data, dict) and isinstance(data.get("error"), dict):
                hint = (data["error"].get("availability") or {}).get("retry_after")
                retry_after = float(hint) if isinstance(hint, (int, float)) else None
            raise _Retry(error, wait=retry_after, down=status >= 500 and status != 529)
        if not isinstance(data, dict):
            raise _Retry(UpstreamError(f"{url} answered with {type(data).__name__}, not an object", kind="bad_response", retryable=True))
        return data


class _Retry(Exception):
    def __init__(self, error: UpstreamError, *, wait: float | None = None, down: bool = False) -> None:
        self.error = error
        self.wait = wait
        self.down = down
