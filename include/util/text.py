"""Small text helpers shared by several steps: row lists in messages, MLflow keys, booleans."""

from __future__ import annotations

import re
from collections.abc import Sequence

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def rows_text(rows: Sequence[int], shown: int = 5) -> str:
    """``rows`` for an error message: the first ``shown`` then how many more, e.g. ``"0, 3 and 7 more"``."""
    text = ", ".join(str(row) for row in rows[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def metric_key(*parts: str) -> str:
    """An MLflow-legal metric or tag key from ``parts`` joined by '.': characters MLflow rejects
    (e.g. '=' or '+') become '_'. MLflow allows letters, digits, '_', '-', '.', ' ', ':' and '/'."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", ".".join(parts))


def parse_bool(text: str | bool, name: str = "value") -> bool:
    """``true/1/yes/on`` -> True, ``false/0/no/off`` or empty -> False (any case, surrounding spaces
    ignored); a bool passes through. Raises ``ValueError`` naming ``name`` for anything else."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of {', '.join(_TRUE + _FALSE[1:])}, got {text!r}")
