"""Serving of a registered model over HTTP (``python -m include.serving``).

The FastAPI app lives in :mod:`include.serving.app`; it is not imported here, so
importing this package loads no web framework. :func:`validate_version` lives in
:mod:`include.registry` and is re-exported for the modules that import it from here.
"""

from __future__ import annotations

from include.registry import validate_version

__all__ = ["validate_version"]
