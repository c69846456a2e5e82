"""The toolkit's errors, and the one error envelope every server of ours answers with.

Every error the toolkit raises on purpose derives from ``NemoGymError``; the CLI catches it,
prints its message on one line and exits with its ``exit_code``. Anything else is a bug and
keeps its traceback.

    NemoGymError
    ├── ConfigError        bad or missing configuration (file, key, value, server reference)
    ├── InputError         a bad input row or request body, or an unusable output file
    ├── HTTPError          a server answers the current request with this status
    │   └── ToolError      a tool refuses the call; the model sees the message (422)
    ├── ServerError        one of our servers is unreachable or answered an error
    ├── UpstreamError      the model provider answered with an error (carries status, kind)
    └── Interrupted        Ctrl-C / SIGTERM arrived; what was done is kept (exit code 130)

On the wire every error is one envelope, the OpenAI/OpenRouter shape::

    {"error": {"message": "...", "type": "tool_error", "code": 422, "retryable": false,
               "source": "upstream"},   # only when the model provider is the cause
     "usage": {...}}                     # only when the failed work already cost tokens

``type`` is a short machine-readable tag (every error's ``kind``: one name in Python, OpenAI's
on the wire), ``code`` the HTTP status, ``retryable`` whether
trying the same request again may help, ``source: "upstream"`` that the model provider
failed (it travels along, so a collector can tell a provider outage from a broken server).
``envelope(exc)`` builds it from any exception; ``ServerError.from_answer`` reads it back.
Messages name what failed, show the bad value and say what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RETRYABLE_STATUS",
    "ConfigError",
    "HTTPError",
    "InputError",
    "Interrupted",
    "NemoGymError",
    "ServerError",
    "ToolError",
    "UpstreamError",
    "envelope",
]

#: Statuses after which the same request may succeed: timeouts, rate limits, conflicts that
#: clear, and server-side failures.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

_KIND_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    422: "validation_error",
    429: "rate_limit",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class NemoGymError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    #: the CLI's exit code for this error
    exit_code = 1
    #: what the failed work had already cost (tokens, ``cost`` in USD), when known: the
    #: envelope carries it, so a failure's cost still counts
    usage: dict[str, Any] | None = None


class ConfigError(NemoGymError):
    """The composed configuration is wrong: what, where and what to do."""

    exit_code = 2


class Interrupted(NemoGymError):
    """Stopped by Ctrl-C or SIGTERM."""

    exit_code = 130


class InputError(NemoGymError):
    """An input row, request body or file is unusable (a usage error for the CLI)."""

    exit_code = 2


class HTTPError(NemoGymError):
    """Answer the current request with ``status`` and the error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str | None = None,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        #: a short machine-readable tag: the envelope's ``type``
        self.kind = kind or _KIND_BY_STATUS.get(status) or ("bad_request" if status < 500 else "internal_error")
        self.retryable = status in RETRYABLE_STATUS if retryable is None else retryable
        #: headers to send with the answer (e.g. Retry-After)
        self.headers = headers or {}
        #: more keys of the envelope's error object (e.g. OpenRouter's ``metadata``)
        self.extra = extra or {}
        self.usage = usage


class ToolError(HTTPError):
    """A tool cannot do what the model asked (unknown id, bad value, ...).

    The agent gives the message back to the model as the tool's output, so the model can
    correct itself; the rollout goes on. Raise it from a ``@tool`` method.
    """

    def __init__(self, message: str) -> None:
        super().__init__(422, message, kind="tool_error", retryable=False)


class ServerError(NemoGymError):
    """One of our servers is unreachable or answered with an error.

    ``status`` is None when no HTTP answer came (connection refused, timeout). ``kind`` and
    ``retryable`` come from the answer's envelope when it had one; ``usage`` is what the
    failed work had already cost (tokens, ``cost`` in USD), when the server said.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        kind: str | None = None,
        retryable: bool | None = None,
        usage: dict[str, Any] | None = None,
        detail: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        #: the answering server's own message (without "POST <url> answered <status>: ")
        self.detail = message if detail is None else detail
        #: "upstream" when the model provider is what failed, further down the chain
        self.source = source
        self.url = url
        self.status = status
        #: a short machine-readable tag (the envelope's ``type``)
        self.kind = kind or ("connection" if status is None else _KIND_BY_STATUS.get(status, "server_error"))
        self.retryable = (status is None or status in RETRYABLE_STATUS) if retryable is None else retryable
        self.usage = usage

    @classmethod
    def from_answer(cls, status: int, body: Any, method: str, url: str) -> ServerError:
        """The error a server of ours (or another) answered: our envelope, FastAPI's
        ``{"detail": ...}`` or any text."""
        error = body.get("error") if isinstance(body, dict) else None
        usage = body.get("usage") if isinstance(body, dict) and isinstance(body.get("usage"), dict) else None
        kind = retryable = source = None
        if isinstance(error, dict):
            source = error.get("source") if isinstance(error.get("source"), str) else None
            detail = str(error.get("message") or error)
            kind = error.get("type") if isinstance(error.get("type"), str) else None
            retryable = error.get("retryable") if isinstance(error.get("retryable"), bool) else None
        elif error is not None:
            detail = str(error)
        elif isinstance(body, dict) and "detail" in body:
            detail = str(body["detail"])
        else:
            detail = body if isinstance(body, str) else repr(body)
        return cls(
            f"{method} {url} answered {status}: {detail[:1000]}",
            url=url,
            status=status,
            kind=kind,
            retryable=retryable,
            usage=usage,
            detail=detail[:1000],
            source=source,
        )


class UpstreamError(NemoGymError):
    """The model provider answered with an error.

    ``status`` is the HTTP status (or the code inside a 200 error body), ``kind`` a short
    machine-readable tag (``auth``, ``credits``, ``model_not_found``, ``rate_limit``,
    ``context_length``, ``tools_unsupported``, ``timeout``, ``connection``, ``server``,
    ``bad_request``, ``bad_response``, ``forbidden``, ``bad_base_url``) and ``retryable``
    whether trying again may help. ``generation_id`` is the provider's id for the failed
    generation, when one was seen (a stream cut short was still billed).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "server",
        retryable: bool = False,
        generation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retryable = retryable
        self.generation_id = generation_id

    @property
    def http_status(self) -> int:
        """The status our model server answers its caller with."""
        if self.kind == "timeout":
            return 504
        if self.status and 400 <= self.status < 500 and not self.retryable:
            return self.status
        return 502


def envelope(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of the error envelope for ``exc``: the one shape every server
    answers errors with. Exceptions that are not the toolkit's are internal errors (500)."""
    if isinstance(exc, HTTPError):
        status, kind, retryable = exc.status, exc.kind, exc.retryable
    elif isinstance(exc, UpstreamError):
        status, kind, retryable = exc.http_status, exc.kind, exc.retryable
    elif isinstance(exc, ServerError):
        # A server we depend on failed: a gateway error, keeping its kind and verdict.
        status = 504 if exc.kind == "timeout" else 502
        if exc.status is not None and 400 <= exc.status < 500 and not exc.retryable:
            status = exc.status
        kind, retryable = exc.kind, exc.retryable
    elif isinstance(exc, InputError):
        status, kind, retryable = 400, "bad_request", False
    elif isinstance(exc, ConfigError):
        status, kind, retryable = 500, "config_error", False
    else:
        status, kind, retryable = 500, "internal_error", True
    if isinstance(exc, ServerError) and exc.kind == "user_code_error":
        message = exc.detail  # the user's error in one line, as the server that ran their code said it
    else:
        message = str(exc) if isinstance(exc, NemoGymError) else f"internal error: {type(exc).__name__}: {exc}"
    error: dict[str, Any] = {"message": message, "type": kind, "code": status, "retryable": retryable}
    if isinstance(exc, HTTPError) and exc.extra:
        error.update({k: v for k, v in exc.extra.items() if k not in error})
    source = "upstream" if isinstance(exc, UpstreamError) else exc.source if isinstance(exc, ServerError) else None
    if source:
        error["source"] = source
    body: dict[str, Any] = {"error": error}
    usage = exc.usage if isinstance(exc, NemoGymError) else None
    if isinstance(usage, dict) and usage:
        body["usage"] = usage
    return status, body
