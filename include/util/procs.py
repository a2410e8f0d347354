"""Child processes started in a session of their own, and stopped with every process they spawned.

A :class:`ManagedProcess` is identified by its pid *and* its start time (``create_time``,
read with psutil): a pid alone may have been recycled by the time somebody reads it back
from a state file, and such a process is never signalled. Starting the child with
``start_new_session=True`` makes it the leader of a new process group, so one ``killpg``
reaches the workers it forked (uvicorn, gunicorn, Airflow's executors) and no signal
meant for the starter's own group (Ctrl-C, an Airflow task being killed) reaches it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from include.util.wait import wait_until

T = TypeVar("T")

# psutil derives create_time from the boot time and clock ticks: the same process can read
# back a few hundredths apart, a recycled pid is seconds (at least) apart
_SAME_START_S = 1.0


class ProcessExited(RuntimeError):
    """The process ended while it was awaited; ``returncode`` is its exit status (None if unknown)."""

    def __init__(self, message: str, returncode: int | None):
        super().__init__(message)
        self.returncode = returncode


class ProcessSurvived(RuntimeError):
    """The process group was still there after SIGKILL and its grace time."""


def log_tail(path: str | os.PathLike, lines: int = 30, offset: int = 0) -> str:
    """The last ``lines`` lines of the log at ``path``, read from byte ``offset`` on.

    Returns the lines joined by newlines; ``"(no log)"`` when the file does not exist and
    ``"(log unreadable: <error>)"`` for any other ``OSError``. Never raises.
    """
    return "\n".join(_log_lines(Path(path), offset)[-lines:])


def _log_lines(path: Path, offset: int) -> list[str]:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            # a child may write anything: a bad byte must not hide the rest of its last words
            return log.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return ["(no log)"]
    except OSError as exc:
        return [f"(log unreadable: {exc})"]


def _live_members(group: int) -> list[int]:
    import psutil

    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):  # gone meanwhile, or not ours to inspect
            continue
    return members


class ManagedProcess:
    """One child process (and its process group), started here or found again from a record.

    ``ManagedProcess.start(...)`` starts one; ``ManagedProcess(pid, create_time, log_path)``
    re-attaches to a process recorded earlier (possibly by another Python process). A
    ``create_time`` of None trusts the pid as it is (for callers that hold no record of it).
    """

    def __init__(
        self,
        pid: int,
        create_time: float | None,
        log_path: str | os.PathLike | None = None,
        *,
        log_offset: int = 0,
        popen: subprocess.Popen | None = None,
    ):
        self.pid = pid
        self.create_time = create_time
        self.log_path = Path(log_path) if log_path is not None else None
        self.log_offset = log_offset
        self._popen = popen

    @classmethod
    def start(
        cls,
        command: Sequence[str],
        *,
        log_path: str | os.PathLike,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        header: str | None = None,
    ) -> ManagedProcess:
        """Start ``command`` in a new session, its stdout and stderr appended to ``log_path``.

        ``header`` (e.g. a ``--- starting ...`` line) is written to the log first; the log
        tail of this process starts at that header, so older runs' lines never show up in
        its error messages. The folder of ``log_path`` is created when missing.

        Returns the started process, with its pid and create_time recorded. Raises
        ``OSError`` (``FileNotFoundError`` for a missing executable) when it cannot start.
        """
        import psutil

        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            offset = log.tell()
            if header:
                log.write(header.encode())
                log.flush()
            # the child gets its own copy of the log descriptor: closing ours is safe
            popen = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        try:
            created = psutil.Process(popen.pid).create_time()
        except psutil.NoSuchProcess:
            created = 0.0  # gone already: alive() is False from now on, and the exit code tells why
        return cls(popen.pid, created, log_path, log_offset=offset, popen=popen)

    # ---------------------------------------------------------------- state

    @property
    def returncode(self) -> int | None:
        """The exit status once a child started here has ended (it is reaped then); None while it
        runs, and always None for a re-attached process, whose status only its parent gets."""
        return self._popen.poll() if self._popen is not None else None

    def alive(self) -> bool:
        """True while the recorded process runs: same pid and start time, and not a zombie. Never raises."""
        import psutil

        if self._popen is not None and self._popen.poll() is not None:
            return False  # ended, and reaped by poll()
        try:
            process = psutil.Process(self.pid)
            if not self._same_start(process):
                return False  # the pid now belongs to another process
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (None: for ever) for the process to end.

        Returns its exit status when it was started here, else None; None also when it is
        still running at the timeout. Never raises for a process that is already gone.
        """
        import psutil

        if self._popen is not None:
            try:
                return self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        try:
            process = psutil.Process(self.pid)
            if self._same_start(process):
                process.wait(timeout=timeout)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
        return None

    def log_lines(self) -> list[str]:
        """Every line this process wrote to its log (from its start on); a one-line note when there is no log."""
        return _log_lines(self.log_path, self.log_offset) if self.log_path is not None else ["(no log)"]

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines this process wrote to its log, joined by newlines. Never raises."""
        return "\n".join(self.log_lines()[-lines:])

    # ---------------------------------------------------------------- waiting and stopping

    def wait_healthy(
        self,
        probe: Callable[[], T],
        timeout: float,
        interval: float = 0.5,
        what: str = "the process",
        *,
        on_timeout: Callable[[], BaseException] | None = None,
    ) -> T:
        """Call ``probe`` every ``interval`` seconds until it returns a truthy value, while the process runs.

        Returns the probe's first truthy value. Raises :class:`ProcessExited` (with the exit
        status and the log tail) as soon as the process ends, ``TimeoutError`` naming ``what``
        and ``timeout`` when it is not healthy in time (or the exception ``on_timeout`` returns),
        and whatever ``probe`` raises. The process is left running on a timeout: stopping it is
        the caller's choice.
        """

        def healthy() -> T:
            # checked before the probe: a dead server's port may already belong to somebody else
            if self._exited():
                code = self.returncode
                where = f"; see {self.log_path}:\n{self.log_tail()}" if self.log_path is not None else ""
                raise ProcessExited(f"{what} exited with code {code}{where}", code)
            return probe()

        return wait_until(healthy, timeout, interval, f"{what} not healthy", on_timeout=on_timeout)

    def stop_group(self, timeout: float = 10.0, kill_timeout: float = 5.0) -> bool:
        """SIGTERM to the process group, up to ``timeout`` s for all of it to end, then SIGKILL.

        The group is the one the process leads (it was started in a session of its own); a
        process that leads none is signalled alone. A zombie leader does not stop its group's
        other members from being signalled, and a child started here is reaped.

        Returns True when a signal was sent, False when the process was gone already or its
        pid belongs to another process now. Raises :class:`ProcessSurvived` when the group is
        still there ``kill_timeout`` s after SIGKILL.
        """
        group = self._group()
        if group is None and not self.alive():
            self._reap()
            return False
        for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
            try:
                if group is not None:
                    os.killpg(group, sig)
                else:
                    os.kill(self.pid, sig)
            except ProcessLookupError:
                self._reap()
                return sig != signal.SIGTERM
            try:
                wait_until(lambda: self._gone(group), grace, 0.1, f"process group {self.pid} still running")
            except TimeoutError:
                continue
            # the leader may turn zombie after _gone last reaped it: reap it until its pid is gone,
            # so that no trace of a child started here outlives the stop
            try:
                wait_until(self._reaped, kill_timeout, 0.05, f"pid {self.pid} to be reaped")
            except TimeoutError:
                pass  # still running after the group was seen gone: the next stop finds it
            return True
        raise ProcessSurvived(f"pid {self.pid} survived SIGKILL")

    def _group(self) -> int | None:
        """The process group to signal: the one this pid leads, or the remnant of it once the leader is gone."""
        import psutil

        try:
            process = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            # a pid is never handed out while a group of that id exists: what is left of it is ours
            # (zombies aside, which no signal can end)
            return self.pid if _live_members(self.pid) else None
        if not self._same_start(process):
            return None
        try:
            return self.pid if os.getpgid(self.pid) == self.pid else None
        except ProcessLookupError:
            return None

    def _gone(self, group: int | None) -> bool:
        self._reap()  # a zombie child would keep its group alive for killpg
        if group is None:
            return not self.alive()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        # killpg also finds zombies: orphans of the group wait there for init to reap them, and
        # in a container whose init never reaps they would wait for ever, dead all the same
        return not _live_members(group)

    def _exited(self) -> bool:
        return self._popen.poll() is not None if self._popen is not None else not self.alive()

    def _reaped(self) -> bool:
        """Reap the process if it is our child; True once its pid no longer names it."""
        import psutil

        self._reap()
        try:
            process = psutil.Process(self.pid)
            # another parent's zombie is its parent's to reap: nothing to wait for here
            return not self._same_start(process) or process.ppid() != os.getpid()
        except psutil.NoSuchProcess:
            return True

    def _reap(self) -> None:
        if self._popen is not None:
            self._popen.poll()
            return
        # our child without a Popen (a caller that passed a bare pid): reaping it is harmless otherwise
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def _same_start(self, process) -> bool:
        return self.create_time is None or abs(process.create_time() - self.create_time) <= _SAME_START_S
