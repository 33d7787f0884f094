"""Keeping credentials out of everything the operator stores, posts or logs.

Every credential the operator reads (a Secret's value used as a bearer token or a header) is
registered here as soon as it is read; `redact` then replaces it, and every form derived from it
(the `Bearer ` form, base64 at any alignment, URL-encoding), with `***` in any text. The log
filter (cli.py) runs it over every log record of every logger (the MCP SDK's and kopf's included),
and the plan runs it over what a server sends back before anything is stored.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

MASK = "***"
MIN_SECRET_LENGTH = 4
# The userinfo of a URL (`https://user:password@host`): invalid in a spec, but a spec is logged as
# written (kopf's DEBUG lines), so logs mask it whatever the redactor has seen.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]+@")


def mask_userinfo(text: str) -> str:
    return _USERINFO.sub(rf"\1{MASK}@", text) if "@" in text else text


def derived_forms(secret: str) -> set[str]:
    """The forms a credential can take in a text: itself, `Bearer X`, base64 (standard and URL-safe,
    inside a longer base64 text at any of the three byte alignments), and URL-encoded."""
    value = secret.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    forms = {value, f"Bearer {value}", quote(value, safe="")}
    raw = value.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            skip = (offset * 4 + 2) // 3             # characters that also depend on the bytes before
            usable = (len(raw) + offset) // 3 * 4    # whole groups only: the rest depends on what follows
            part = encoded[skip:usable]
            if len(part) >= MIN_SECRET_LENGTH + 2:
                forms.add(part)
        forms.add(base64.b64encode(raw).decode().rstrip("="))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """The credentials seen so far, and `redact(text)` to mask them. Safe to share between threads."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        forms = set().union(*(derived_forms(secret) for secret in secrets)) if secrets else set()
        with self._lock:
            if forms <= self._forms:
                return
            self._forms |= forms
            ordered = sorted(self._forms, key=len, reverse=True)     # longest first: no half-masked secret
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None or not text else pattern.sub(MASK, text)

    def redact_all(self, value: Any) -> Any:
        """A JSON-like copy of `value` whose every string, keys included, is masked (`redact` and
        `mask_userinfo`); any other object becomes its masked `str()`, so no encoder can print it raw."""
        if isinstance(value, str):
            return mask_userinfo(self.redact(value))
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, Mapping):
            return {self.redact_all(str(key)): self.redact_all(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_all(item) for item in value]
        return mask_userinfo(self.redact(str(value)))

    def contains(self, text: str) -> bool:
        pattern = self._pattern
        return pattern is not None and bool(text) and pattern.search(text) is not None

    def __len__(self) -> int:
        return len(self._forms)
