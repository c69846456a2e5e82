"""The toolkit's errors.

Every error the toolkit raises on purpose derives from ``NemoGymError``; the CLI catches it,
prints its message on one line and exits non-zero. Anything else is a bug and keeps its
traceback.

    NemoGymError
    ├── ConfigError        bad or missing configuration (file, key, value, server reference)
    ├── InputError         a bad input row (JSONL line), or an output file that can't be used
    ├── ServerError        a server of ours is unreachable, not ready, or answered an error
    ├── UpstreamError      the model provider answered with an error (carries status, kind)
    └── Interrupted        Ctrl-C / SIGTERM arrived; what was done is kept (exit code 130)

Messages name what failed, show the bad value and say what to do.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "Interrupted",
    "NemoGymError",
    "ServerError",
    "UpstreamError",
]


class NemoGymError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    #: the CLI's exit code for this error
    exit_code = 1


class ConfigError(NemoGymError):
    """The composed configuration is wrong: what, where and what to do."""

    exit_code = 2


class Interrupted(NemoGymError):
    """Stopped by Ctrl-C or SIGTERM."""

    exit_code = 130


class InputError(NemoGymError):
    """An input row or file is unusable."""


class ServerError(NemoGymError):
    """One of our servers is unreachable or answered with an error."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class UpstreamError(NemoGymError):
    """The model provider answered with an error.

    ``status`` is the HTTP status (or the code inside a 200 error body), ``kind`` a short
    machine-readable tag (``auth``, ``credits``, ``model_not_found``, ``rate_limit``,
    ``context_length``, ``tools_unsupported``, ``timeout``, ``connection``, ``server``,
    ``bad_request``, ``bad_response``, ``forbidden``, ``bad_base_url``) and ``retryable``
    whether trying again may help.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "server",
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retryable = retryable

    def to_body(self) -> dict:
        """The error as a JSON body our servers return (OpenAI/OpenRouter error shape)."""
        return {
            "error": {
                "message": str(self),
                "code": self.status,
                "type": self.kind,
                "retryable": self.retryable,
            }
        }
