"""Atomic file writes: a reader sees the whole file or none of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(
    target: str | os.PathLike, payload: bytes | str, *, filesystem: Any = None, fsync: bool = True
) -> None:
    """Write ``payload`` to ``target`` so that no reader ever sees a partial file.

    On a local disk (``filesystem`` None or fsspec's local one) the bytes go to a
    hidden temporary file in the target's folder (same filesystem, so the rename is
    atomic), are flushed and, with ``fsync``, forced to disk, then replace the
    target in one ``os.replace``; the folder is created when missing. On an object
    store a single PUT (``filesystem.pipe_file``) is atomic by itself. ``str``
    payloads are written as UTF-8. Raises ``OSError`` from the filesystem; on any
    failure the temporary file is removed and the target is left as it was.
    """
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if filesystem is not None and not _is_local(filesystem):
        filesystem.pipe_file(str(target), data)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _is_local(filesystem: Any) -> bool:
    protocol = getattr(filesystem, "protocol", "file")
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols
