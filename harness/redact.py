"""Passwords never shown: every URL's password replaced by *** wherever a URL is printed or stored."""

from __future__ import annotations

import re

__all__ = ["redact"]

_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@\s]*)@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _PASSWORD.sub(lambda m: f"{m['head']}:***@", str(text))
