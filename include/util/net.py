"""Network helpers: whether a host or URL is this machine's loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host_or_url: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``, given as a host or as a URL
    (``http://127.0.0.1:5080``); False for any other name or address."""
    host = urlsplit(host_or_url).hostname if "://" in host_or_url else host_or_url
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
