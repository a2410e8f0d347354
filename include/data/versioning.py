"""The DVC data registry: every training snapshot, versioned by content, outside the project checkout.

The registry is its own git + DVC repository (DVC's "data registry" pattern):
a snapshot is a parquet file tracked by a small ``.dvc`` file that git
commits, while the bytes go to the DVC cache and to the DVC remote. Pipeline
runs therefore never modify the project checkout, and a ``DatasetRef``
(path, md5, git rev) is enough to get the exact bytes back anywhere that can
reach the registry and the remote.

Git runs as a subprocess. DVC's writes (init, config, add, push) run as the
``dvc`` command line of this interpreter, so its console output and logging
stay out of the calling process (an Airflow worker); reads go through
``dvc.api.open``. Analytics are disabled both in the registry's config and in
the environment of every ``dvc`` process, so using the registry makes no
network call other than to the remote.

Concurrent writers (two Airflow tasks) are serialised by a file lock next to
the registry folder; the lock is taken before the folder exists, so even two
first-time ``ensure()`` calls cannot race.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path

import pandas as pd

from include.util.fs import write_atomically

REMOTE_NAME = "storage"
SNAPSHOT_ROOT = "snapshots"
GIT_USER_NAME = "MLOps data registry"
GIT_USER_EMAIL = "data-registry@localhost"
LOCK_TIMEOUT_S = 600
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DataRegistryError(RuntimeError):
    """A git or DVC operation on the registry failed; the message names the command and its output."""


class DataVersionError(DataRegistryError):
    """The data version asked for cannot be produced exactly; the message names path, rev and md5."""


@dataclass(frozen=True)
class DatasetRef:
    """Where one snapshot lives: enough to read back its exact bytes. Travels through XCom as a dict."""

    repo: str
    path: str
    md5: str
    rev: str
    rows: int
    window_start: str
    window_end: str

    def to_dict(self) -> dict:
        """The reference as a plain dict with one key per field (``rows`` an int, the rest str)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetRef:
        """The reference a :meth:`to_dict` dict describes; ``rows`` is coerced to int, the rest to str.

        Raises ``ValueError`` when ``data`` is not a dict, lacks a field, or has a ``rows`` that is not an integer.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a DatasetRef needs a dict, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"DatasetRef is missing {', '.join(missing)} (got keys {sorted(data)})")
        try:
            rows = int(data["rows"])
        except (TypeError, ValueError):
            raise ValueError(f"DatasetRef rows must be an integer, got {data['rows']!r}") from None
        return cls(**{name: str(data[name]) for name in names if name != "rows"}, rows=rows)

    def describe(self) -> str:
        """A one-line str naming path, rev, md5 and data registry, for logs and error messages."""
        return f"{self.path} at rev {self.rev} (md5 {self.md5}) in data registry {self.repo}"

    def to_tags(self) -> dict[str, str]:
        """The lineage tags a model version trained on this snapshot carries: ``data.repo``,
        ``data.path``, ``data.md5``, ``data.rev``, ``data.rows`` and ``data.window`` (``start..end``).

        Returns a dict of str to str.
        """
        return {
            "data.repo": self.repo,
            "data.path": self.path,
            "data.md5": self.md5,
            "data.rev": self.rev,
            "data.rows": str(self.rows),
            "data.window": f"{self.window_start}..{self.window_end}",
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> DatasetRef:
        """The snapshot a model version's lineage tags (:meth:`to_tags`) point at.

        Returns a :class:`DatasetRef`. Raises :class:`LineageError` naming a missing or empty tag, a
        ``data.window`` that is not ``YYYY-MM-DD..YYYY-MM-DD``, or another malformed tag (``data.rows``).
        """
        missing = [key for key in LINEAGE_TAGS if not tags.get(key)]
        if missing:
            raise LineageError(f"lacks lineage tag(s) {', '.join(missing)}: cannot find the data it was trained on")
        start, separator, end = tags["data.window"].partition("..")
        try:
            if not separator:
                raise ValueError(tags["data.window"])
            date.fromisoformat(start)
            date.fromisoformat(end)
        except ValueError:
            raise LineageError(
                f"has tag data.window={tags['data.window']!r}, which is not 'YYYY-MM-DD..YYYY-MM-DD'"
            ) from None
        try:
            return cls.from_dict(
                {
                    "repo": tags["data.repo"],
                    "path": tags["data.path"],
                    "md5": tags["data.md5"],
                    "rev": tags["data.rev"],
                    "rows": tags["data.rows"],
                    "window_start": start,
                    "window_end": end,
                }
            )
        except ValueError as exc:
            raise LineageError(f"has bad lineage tags: {exc}") from None


class LineageError(ValueError):
    """A model version's lineage tags do not lead to its data; the message, a verb phrase to put
    after the version's name ("lacks lineage tag(s) ..."), names the tag."""


# the tags DatasetRef.to_tags writes and from_tags reads
LINEAGE_TAGS = ("data.repo", "data.path", "data.md5", "data.rev", "data.rows", "data.window")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as parquet without its index; equal frames give equal bytes, so equal md5s.

    Returns bytes; pyarrow's errors pass through.
    """
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def _is_url(location: str) -> bool:
    return "://" in location


def _registry_lock(repo: Path):
    """The lock serialising writers (and readers) of one registry; it sits beside the folder."""
    from filelock import FileLock

    repo.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(repo.parent / f".{repo.name}.lock"), timeout=LOCK_TIMEOUT_S)


def _dvc_env() -> dict[str, str]:
    env = dict(os.environ)
    # Belt and braces with core.analytics=false: the CLI would otherwise report usage over the network.
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


class DataRegistry:
    """A local git + DVC repository of dataset snapshots, pushing their bytes to ``remote``."""

    def __init__(self, repo: str | Path, remote: str, git_remote: str | None = None):
        """``git_remote``: where snapshots' commits are pushed (a git URL) so that other
        machines, such as a training pod, can read them; references then name it as repo."""
        if not str(repo).strip():
            raise ValueError("data registry path is empty")
        if not str(remote).strip():
            raise ValueError("DVC remote is empty")
        self.repo = Path(repo).expanduser().resolve()
        # A relative local remote would be resolved against .dvc/ by DVC; pin it down here.
        self.remote = remote if _is_url(remote) else str(Path(remote).expanduser().resolve())
        self.git_remote = git_remote or None

    def __repr__(self) -> str:
        return f"DataRegistry(repo={str(self.repo)!r}, remote={self.remote!r})"

    # -- plumbing -------------------------------------------------------------------------------

    def _lock(self):
        return _registry_lock(self.repo)

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run(command, cwd=self.repo, env=_dvc_env(), capture_output=True, text=True)
        if check and completed.returncode != 0:
            shown = " ".join(["dvc", *command[3:]] if command[0] == sys.executable else command)
            output = (completed.stderr.strip() or completed.stdout.strip())[-2000:]
            raise DataRegistryError(
                f"`{shown}` failed in data registry {self.repo} (exit {completed.returncode}): {output}"
            )
        return completed

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run("git", *args, check=check)

    def _dvc(self, *args: str) -> subprocess.CompletedProcess:
        return self._run(sys.executable, "-m", "dvc", *args)

    def _dvc_config(self) -> dict:
        from configobj import ConfigObj

        path = self.repo / ".dvc" / "config"
        return ConfigObj(str(path)) if path.exists() else {}

    # -- public API -----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the registry if needed: git repo, DVC repo, analytics off, ``remote`` as default."""
        with self._lock():
            self._ensure()

    def _ensure(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        if not (self.repo / ".git").exists():
            self._git("init", "-q", "-b", "main")
        # A repo-local identity: commits must work on workers that have no git identity at all.
        for key, value in (("user.name", GIT_USER_NAME), ("user.email", GIT_USER_EMAIL), ("commit.gpgsign", "false")):
            if self._git("config", "--local", "--get", key, check=False).stdout.strip() != value:
                self._git("config", "--local", key, value)
        if not (self.repo / ".dvc").exists():
            self._dvc("init", "-q")
        config = self._dvc_config()
        if str(config.get("core", {}).get("analytics", "")).lower() != "false":
            self._dvc("config", "core.analytics", "false")
        remote_section = config.get(f'remote "{REMOTE_NAME}"', {})
        if remote_section.get("url") != self.remote or config.get("core", {}).get("remote") != REMOTE_NAME:
            self._dvc("remote", "add", "--project", "-d", "-f", REMOTE_NAME, self.remote)
        config_files = (".dvc/config", ".dvc/.gitignore", ".dvcignore")
        self._git("add", "--", *config_files)
        if self._git("diff", "--cached", "--name-only", "--", *config_files).stdout.strip():
            has_head = self._git("rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0
            message = f"data registry remote: {self.remote}" if has_head else "initialise data registry"
            self._git("commit", "-q", "--no-verify", "-m", message, "--", *config_files)
        if self.git_remote:
            if self._git("remote", "get-url", "origin", check=False).stdout.strip() != self.git_remote:
                self._git("remote", "remove", "origin", check=False)
                self._git("remote", "add", "origin", self.git_remote)
            self._git("push", "-q", "origin", "HEAD:refs/heads/main")

    def snapshot_path(self, dataset: str, window_start: date, window_end: date) -> str:
        """The repository-relative path (a str) of the snapshot of ``dataset`` for that window."""
        return f"{SNAPSHOT_ROOT}/{dataset}/{window_start.isoformat()}_{window_end.isoformat()}.parquet"

    def snapshot(self, frame: pd.DataFrame, dataset: str, window_start: date, window_end: date) -> DatasetRef:
        """Version ``frame`` as the snapshot of ``dataset`` for [window_start, window_end).

        Idempotent: when the same bytes are already committed at that path, nothing
        is written, pushed or committed, and the commit that holds them is returned.
        Returns the :class:`DatasetRef` of the snapshot. Raises ``ValueError`` for a frame that is not
        a DataFrame, a bad dataset name or window, and :class:`DataRegistryError` when DVC records
        another md5 or a git/DVC command fails.
        """
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"snapshot needs a pandas DataFrame, got {type(frame).__name__}")
        if not isinstance(dataset, str) or not _DATASET_NAME.match(dataset):
            raise ValueError(f"dataset name {dataset!r} must be letters, digits, '_', '.' or '-'")
        if not isinstance(window_start, date) or not isinstance(window_end, date) or window_start >= window_end:
            raise ValueError(
                f"snapshot window must be two dates with start < end, got {window_start!r} and {window_end!r}"
            )
        payload = parquet_bytes(frame)
        md5 = hashlib.md5(payload).hexdigest()
        path = self.snapshot_path(dataset, window_start, window_end)
        dvc_file = f"{path}.dvc"

        def ref(rev: str) -> DatasetRef:
            if self.git_remote:
                # the bytes are in the DVC remote and the commit in the git remote: readable anywhere
                self._git("push", "-q", "origin", "HEAD:refs/heads/main")
            return DatasetRef(
                repo=self.git_remote or str(self.repo),
                path=path,
                md5=md5,
                rev=rev,
                rows=len(frame),
                window_start=window_start.isoformat(),
                window_end=window_end.isoformat(),
            )

        with self._lock():
            self._ensure()
            if self._committed_md5(dvc_file) == md5:
                return ref(self._git("log", "-1", "--format=%H", "--", dvc_file).stdout.strip())
            # dvc add leaves a read-only link or copy of the cache in place: replace it, never write into it
            write_atomically(self.repo / path, payload)
            self._dvc("add", "-q", path)
            tracked = self._tracked_md5((self.repo / dvc_file).read_text())
            if tracked != md5:
                raise DataRegistryError(f"dvc add recorded md5 {tracked} for {path}, expected {md5}")
            self._dvc("push", "-q", dvc_file)
            gitignore = str(Path(path).parent / ".gitignore")
            self._git("add", "--", dvc_file, gitignore)
            # Commit only these two paths, whatever else an interrupted earlier attempt left staged.
            self._git(
                "commit",
                "-q",
                "--no-verify",
                "-m",
                f"snapshot {dataset} {window_start}..{window_end}, md5 {md5}",
                "--",
                dvc_file,
                gitignore,
            )
            return ref(self._git("rev-parse", "HEAD").stdout.strip())

    def load(self, ref: DatasetRef) -> pd.DataFrame:
        """The frame ``ref`` names, as :func:`load` reads it: same return value and errors."""
        return load(ref)

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _tracked_md5(dvc_file_text: str) -> str | None:
        import yaml

        try:
            outs = (yaml.safe_load(dvc_file_text) or {}).get("outs") or []
            return str(outs[0]["md5"]) if outs else None
        except (yaml.YAMLError, AttributeError, KeyError, TypeError):
            return None

    def _committed_md5(self, dvc_file: str) -> str | None:
        shown = self._git("show", f"HEAD:{dvc_file}", check=False)
        return self._tracked_md5(shown.stdout) if shown.returncode == 0 else None


def load(ref: DatasetRef) -> pd.DataFrame:
    """The exact frame ``ref`` names, read at its git rev (from the cache, else from the DVC remote).

    Raises DataVersionError when the version cannot be read or its bytes do not
    hash to ``ref.md5``: never returns other data.
    """
    if not isinstance(ref, DatasetRef):
        raise ValueError(f"load needs a DatasetRef, got {type(ref).__name__}")
    local = not _is_url(ref.repo)
    # a working copy, or a bare repository (the git remote of a kubernetes setup, as a path)
    if local and not (Path(ref.repo, ".git").exists() or Path(ref.repo, "HEAD").is_file()):
        raise DataVersionError(f"cannot load {ref.describe()}: {ref.repo} is not a data registry")
    lock = _registry_lock(Path(ref.repo)) if local else None
    try:
        import dvc.api

        if lock is not None:
            # dvc takes its own repo lock while reading; waiting for a concurrent snapshot beats failing on it.
            with lock:
                payload = _read(dvc.api, ref)
        else:
            payload = _read(dvc.api, ref)
    except DataVersionError:
        raise
    except Exception as exc:  # dvc raises many unrelated types: missing rev, path, remote, object
        cause = _diagnose(ref) if local else None
        raise DataVersionError(
            f"cannot load {ref.describe()}: {cause or 'dvc failed'} ({type(exc).__name__}: {exc})"
        ) from exc
    actual = hashlib.md5(payload).hexdigest()
    if actual != ref.md5:
        raise DataVersionError(f"refusing to load {ref.describe()}: its bytes hash to md5 {actual}")
    return pd.read_parquet(io.BytesIO(payload))


def _read(dvc_api, ref: DatasetRef) -> bytes:
    with dvc_api.open(ref.path, repo=ref.repo, rev=ref.rev, mode="rb") as handle:
        return handle.read()


def _diagnose(ref: DatasetRef) -> str | None:
    """Why a local version cannot be read, in words; DVC reports all three cases as 'path missing'."""

    def git_ok(*args: str) -> bool:
        return subprocess.run(["git", *args], cwd=ref.repo, capture_output=True).returncode == 0

    if not git_ok("cat-file", "-e", f"{ref.rev}^{{commit}}"):
        return f"rev {ref.rev} does not exist in the registry"
    if not git_ok("cat-file", "-e", f"{ref.rev}:{ref.path}.dvc"):
        return f"{ref.path} is not tracked at rev {ref.rev}"
    return "its bytes are in neither the DVC cache nor the DVC remote (remote unreachable or object deleted)"
