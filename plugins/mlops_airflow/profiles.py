"""The deployment profile, read cheaply at parse time (an environment variable, never a Variable)."""

from __future__ import annotations

import os

LOCAL = "local"
KUBERNETES = "kubernetes"


def current_profile() -> str:
    profile = os.environ.get("MLOPS_PROFILE", LOCAL)
    if profile not in (LOCAL, KUBERNETES):
        raise ValueError(f"MLOPS_PROFILE={profile!r} is not one of {LOCAL}, {KUBERNETES}")
    return profile
