"""Serving of a registered model over HTTP (``python -m include.serving``).

The FastAPI app lives in :mod:`include.serving.app`; it is not imported here so
that the deploy step can use :func:`validate_version` without loading FastAPI.
"""
from __future__ import annotations


def validate_version(version: object) -> str:
    """A registry version number as a canonical string ("3"); anything else raises ValueError.

    Only digits are accepted because the version becomes part of a ``models:/`` URI.
    """
    is_text_or_number = isinstance(version, (str, int)) and not isinstance(version, bool)
    text = str(version).strip() if is_text_or_number else ""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"model version must be a positive integer such as \"3\", got {version!r}")
    return str(int(text))
