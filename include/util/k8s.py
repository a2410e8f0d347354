"""Kubernetes resource quantities (``500m``, ``2Gi``, ``1e3``), read by the Kubernetes client's parser."""

from __future__ import annotations


def is_quantity(text: str) -> bool:
    """True when ``text`` is a resource quantity a container may ask for: a non-negative number
    with an optional suffix (``4``, ``500m``, ``1.5``, ``16Gi``, ``1e3``) as
    ``kubernetes.utils.parse_quantity`` reads it; False for anything else, a non-string included.
    Never raises.
    """
    # imported here: the client package costs a third of a second, and DAG files import this module
    from kubernetes.utils import parse_quantity

    # parse_quantity hands the number to Decimal, which also takes spaces ("16 G"), '_', non-ASCII
    # digits, NaN and Infinity: the API server refuses all of them, so they fail here, by name
    if not isinstance(text, str) or not text.isascii() or any(char.isspace() or char == "_" for char in text):
        return False
    try:
        value = parse_quantity(text)
    except (ValueError, ArithmeticError):  # ArithmeticError: Decimal's own signals (sNaN, overflow)
        return False
    return value.is_finite() and value >= 0
