"""What a rollout asks of the serving endpoint: :class:`RolloutConfig` (no heavy imports).

A rollout serves a ``candidate`` version beside the champion, in one of two modes:

- ``shadow``: the champion answers every request; the candidate scores the same rows and
  only its predictions are logged (the inference log's ``other_*`` columns);
- ``canary``: a sticky share of the rows is answered by the candidate. A row's key is its
  value of ``sticky_column`` when the request carries that column, else the request id;
  the candidate answers it iff ``bucket(key) < canary_share``
  (:func:`include.serving.rollout.bucket`), so raising the share keeps every key that
  already went to the candidate.

The same dict (:meth:`RolloutConfig.as_json`) is the body of ``POST /admin/rollout``,
what ``GET /admin/rollout`` reports, and what the local server's ``state.json`` records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHADOW = "shadow"
CANARY = "canary"
ROLLOUT_MODES = (SHADOW, CANARY)


@dataclass(frozen=True)
class RolloutConfig:
    """A candidate served beside the champion.

    ``candidate_version`` is a registered version (canonical text, e.g. ``"5"``); ``mode`` is
    ``"shadow"`` or ``"canary"``; ``canary_share`` is the share of keys the candidate answers
    (0 < share <= 1 for canary; kept as 0.0 for shadow, where it means nothing);
    ``sticky_column`` is the request column whose value keeps a row's key (None: the request id).

    Raises ``ValueError`` naming the field for a malformed version, an unknown mode, a share
    out of range, or a blank sticky column.
    """

    candidate_version: str
    mode: str
    canary_share: float = 0.0
    sticky_column: str | None = None

    def __post_init__(self) -> None:
        from include.registry import validate_version

        object.__setattr__(self, "candidate_version", validate_version(self.candidate_version))
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout mode must be one of {', '.join(ROLLOUT_MODES)}, got {self.mode!r}")
        share = self.canary_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
            raise ValueError(f"canary_share must be a number in (0, 1], got {share!r}")
        if self.mode == CANARY and not 0 < share <= 1:
            raise ValueError(f"canary_share must be in (0, 1] for a canary, got {share!r}")
        if self.mode == SHADOW:
            share = 0.0
        object.__setattr__(self, "canary_share", float(share))
        if self.sticky_column is not None and (not isinstance(self.sticky_column, str) or not self.sticky_column):
            raise ValueError(f"sticky_column must be a column name or None, got {self.sticky_column!r}")

    def as_json(self) -> dict[str, Any]:
        """``{"candidate_version", "mode", "canary_share", "sticky_column"}``: JSON-ready."""
        return {
            "candidate_version": self.candidate_version,
            "mode": self.mode,
            "canary_share": self.canary_share,
            "sticky_column": self.sticky_column,
        }

    def server_args(self) -> list[str]:
        """The model server's command-line options for this rollout (``--candidate-version 5 --rollout-mode
        canary --canary-share 0.05 ...``), a list of str."""
        args = ["--candidate-version", self.candidate_version, "--rollout-mode", self.mode]
        if self.mode == CANARY:
            args += ["--canary-share", repr(self.canary_share)]
        if self.sticky_column is not None:
            args += ["--sticky-column", self.sticky_column]
        return args

    @classmethod
    def from_json(cls, payload: Mapping[str, Any] | None) -> RolloutConfig | None:
        """The config a JSON object describes (the shape of :meth:`as_json`, or ``GET /admin/rollout``'s
        with ``candidate_version`` null, which is no rollout: None). Raises ``ValueError`` for a
        payload that is not an object or a field that is malformed."""
        if payload is None:
            return None
        if not isinstance(payload, Mapping):
            raise ValueError(f"a rollout is a JSON object, got {type(payload).__name__}")
        if payload.get("candidate_version") is None:
            return None
        unknown = set(payload) - {"candidate_version", "mode", "canary_share", "sticky_column", "champion_version"}
        if unknown:
            raise ValueError(f"unknown rollout field(s): {', '.join(sorted(unknown))}")
        return cls(
            candidate_version=payload["candidate_version"],
            mode=payload.get("mode"),
            canary_share=payload.get("canary_share", 0.0) if payload.get("canary_share") is not None else 0.0,
            sticky_column=payload.get("sticky_column"),
        )
