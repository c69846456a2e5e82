"""Keeping keys out of what we show: URLs, config values, messages.

    redact_url("https://user:sk-123@host/v1?key=sk-456")  ->  "https://<redacted>@host/v1?key=<redacted>"
    redact({"openai_api_key": "sk-123", "url": "https://u:p@h"})  ->  both redacted
    Scrubber(["sk-123"]).scrub("the key sk-123 was ...")  ->  "the key <redacted> was ..."

Three layers, because a key hides in three ways: in a URL (``user:password@`` or a query
parameter named like a secret), under a key whose name says what it is (``api_key``,
``token``, ``Authorization``), or copied anywhere else (an interpolation put it in a
header value, a provider echoed it in an error). Every message, log line and HTTP response
of ours that shows a provider URL or config value goes through these.

And, as CI systems mask secrets, every process of ours masks every secret it knows in
everything it prints: ``MASK`` is the process's ``Scrubber`` (the secret values of the
config, ``remember_secrets``, plus the shapes of well-known keys: ``sk-...``, ``hf_...``),
and ``mask_output()`` routes ``sys.stdout`` and ``sys.stderr`` through it, so a key put by
mistake anywhere (``openai_base_url: ${policy_api_key}``) never reaches a terminal, a log
or a CI transcript. Files we write (failures, logs) and error answers go through ``MASK``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MASK",
    "REDACTED",
    "Scrubber",
    "is_secret_name",
    "mask_output",
    "redact",
    "redact_url",
    "remember_secrets",
    "secret_values",
]

REDACTED = "<redacted>"
#: Words of a key name that say its value is a secret (``openai_api_key``, ``hf_token``,
#: ``Authorization``, ``reject_keys``); ``max_tokens`` or ``tokenizer`` are not.
_SECRET_WORDS = frozenset(
    ("key", "keys", "apikey", "token", "secret", "secrets", "password", "passwd", "authorization", "auth")
    + ("credential", "credentials", "bearer", "cookie")
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<cred>[^@/\s?#]+)@", re.IGNORECASE)
# A query parameter (or fragment parameter) whose name says it holds a secret: ?key=..., &api_token=...
_SECRET_PARAM = re.compile(
    r"(?P<lead>[?&#;](?P<name>[A-Za-z0-9_.-]*(?:key|token|secret|password|passwd|sig|signature|auth)"
    r"[A-Za-z0-9_.-]*)=)(?P<value>[^&#\s\"']+)",
    re.IGNORECASE,
)
#: Shorter values are not scrubbed by value (they would blank out ordinary words).
MIN_SECRET_LENGTH = 8
#: Well-known shapes of keys (OpenAI/OpenRouter/Anthropic ``sk-``, Hugging Face ``hf_``,
#: GitHub, Slack), masked wherever they appear, configured or not.
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,})"
)


def is_secret_name(name: str) -> bool:
    """Whether a config key or header named ``name`` holds a secret (by its words)."""
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def redact_url(text: str) -> str:
    """``text`` with the ``user:password@`` of any URL in it, and the values of query
    parameters named like secrets (``?key=``, ``&api_token=``), replaced."""
    if "@" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m.group('lead')}{REDACTED}", text)
    return text


def secret_values(value: Any, name: str = "") -> list[str]:
    """Every string held under a secret-looking name anywhere in ``value`` (a config tree;
    under such a name, dict keys too: ``reject_keys: {sk-...: 401}``), long enough to scrub
    by value."""
    out: list[str] = []
    if name and is_secret_name(name):
        _strings(value, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            out += secret_values(v, str(k))
    elif isinstance(value, list):
        for v in value:
            out += secret_values(v, name)
    return [s for s in out if len(s) >= MIN_SECRET_LENGTH]


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(str(k), out)
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


class Scrubber:
    """Replaces known secret values, key-shaped strings and URL credentials in any text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Know more secret values (the longest are replaced first)."""
        known = set(self.secrets) | {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        self.secrets = sorted(known, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "sk-" in text or "_" in text or "xox" in text:
            text = _KEY_SHAPES.sub(REDACTED, text)
        return redact_url(text)


#: The secrets this process knows: what it prints and writes is masked with them.
MASK = Scrubber(())


def remember_secrets(config: Any) -> None:
    """Mask, from now on, every secret value of ``config`` (a config tree) in this process."""
    MASK.add(secret_values(config))


class _MaskedStream:
    """A text stream that masks ``MASK``'s secrets in everything written to it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(MASK.scrub(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def mask_output() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through ``MASK`` (once; before logging is set
    up, so its handlers write through it too)."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _MaskedStream):
            setattr(sys, name, _MaskedStream(stream))


def redact(value: Any, name: str = "", scrubber: Scrubber | None = None) -> Any:
    """``value`` (a config tree) with every secret-looking key's value, URL credentials and
    every known secret value wherever it was copied (``scrubber``'s, else this process's
    ``MASK``), redacted."""
    scrubber = scrubber if scrubber is not None else MASK
    if name and is_secret_name(name) and value not in (None, "", {}, []):
        return REDACTED
    if isinstance(value, dict):
        return {(scrubber.scrub(k) if isinstance(k, str) else k): redact(v, str(k), scrubber) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name, scrubber) for v in value]
    if isinstance(value, str):
        return scrubber.scrub(value)
    return value
