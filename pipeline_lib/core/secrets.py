"""Keeping secrets out of messages: one masking function for every error and log path.

Secrets are the values of the variables in
:data:`pipeline_lib.core.config.SECRET_VARIABLES` (read from the environment when masking)
plus any value registered with :func:`register_secret` (e.g. a key passed in code).
URL query parameters that conventionally carry credentials (``apikey=``, ``key=``,
``token=``, ...) are masked too, whatever their value, because a server or proxy may
echo a request URL back in an error body.
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_CREDENTIAL_PARAMETER = re.compile(
    r"(?i)\b((?:api[_-]?key|apikey|key|token|access_token|password|secret)(?:=|%3D))"
    r"[^&\s'\"<>]+"
)
_registered: set[str] = set()
_variables: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later message (values shorter than 4 characters are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def watch_variables(names: frozenset[str] | set[str]) -> None:
    """Mask the values these environment variables hold whenever a message is masked."""
    with _lock:
        _variables.update(names)


def _secrets() -> list[str]:
    with _lock:
        values = {os.environ.get(name, "") for name in _variables} | _registered
    # Longest first, so a secret that contains another is masked whole.
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def mask(text: str) -> str:
    """``text`` with every known secret and credential-like URL parameter replaced."""
    masked = _CREDENTIAL_PARAMETER.sub(rf"\1{MASK}", text)
    for secret in _secrets():
        # Also as it appears inside a URL (percent- or plus-encoded).
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            masked = masked.replace(form, MASK)
    return masked
