"""Secrets never leave the process: passwords in URLs are masked wherever text goes out.

An endpoint such as ``http://user:PASSWORD@host`` or a database URL with a password
would otherwise reach stderr, logs, ``status``, ``sources.endpoint_url`` and
``sync_runs.error``. Every one of those goes through ``redact`` (or stores
``mask_url``'s form), so the password is replaced by ``***`` and the rest stays
readable.
"""

from __future__ import annotations

import re

# scheme://user:password@ — the password is whatever stands between ':' and '@'.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):(?P<secret>[^\s/@]+)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['head']}:***@", text)


def mask_url(url: str | None) -> str:
    """One URL as it may be shown or stored: its password masked."""
    return redact(url) if url else ""
