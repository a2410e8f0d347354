"""ManagedProcess against real child processes: start, health, log tail, and a group stop that leaves nothing."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import psutil
import pytest

from include.util.procs import ManagedProcess, ProcessExited, log_tail

# a server stand-in: forks a worker into its own process group (as uvicorn or Airflow do),
# says so in its log, then marks itself ready; with IGNORE_TERM it shrugs off SIGTERM
SERVER = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"worker {worker.pid}", flush=True)
    for line in range(40):
        print(f"line {line}", flush=True)
    open(sys.argv[1], "w").close()
    time.sleep(600)
""")


def _group_members(group: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return members


@pytest.fixture
def started(tmp_path):
    """A running server stand-in; stopped at the end whatever the test did."""
    processes = []

    def start(ignore_term: bool = False) -> ManagedProcess:
        env = {**os.environ, **({"IGNORE_TERM": "1"} if ignore_term else {})}
        process = ManagedProcess.start(
            [sys.executable, "-c", SERVER, str(tmp_path / "ready")],
            log_path=tmp_path / "logs" / "server.log",
            env=env,
            cwd=tmp_path,
            header="--- starting the stand-in\n",
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop_group(timeout=1, kill_timeout=5)


def test_a_started_process_leads_its_own_group_and_is_recorded_by_pid_and_start_time(started, tmp_path):
    process = started()

    assert process.pid != os.getpid()
    assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    assert process.create_time == psutil.Process(process.pid).create_time()
    assert process.alive() and process.returncode is None
    # the same record, read back by somebody else, finds the same process
    assert ManagedProcess(process.pid, process.create_time).alive()


def test_wait_healthy_returns_the_probes_answer_and_the_log_tail_starts_at_this_run(started, tmp_path):
    log = tmp_path / "logs" / "server.log"
    log.parent.mkdir()
    log.write_text("an older run's last words\n")
    process = started()

    ready = tmp_path / "ready"
    assert process.wait_healthy(lambda: ready.exists() and "ready", timeout=30, interval=0.05) == "ready"

    assert process.log_tail(2) == "line 38\nline 39"
    lines = process.log_lines()
    assert lines[0] == "--- starting the stand-in" and "an older run's last words" not in lines
    assert log_tail(log, 1, offset=0) == "line 39"
    assert log_tail(tmp_path / "missing.log") == "(no log)"


def test_stop_group_ends_the_process_and_its_workers_leaving_nothing_behind(started, tmp_path):
    process = started()
    process.wait_healthy((tmp_path / "ready").exists, timeout=30, interval=0.05)
    worker = int(process.log_lines()[1].split()[1])
    assert set(_group_members(process.pid)) == {process.pid, worker}

    assert process.stop_group(timeout=10) is True

    assert _group_members(process.pid) == []
    assert not process.alive() and process.returncode is not None  # reaped: no zombie left either
    assert not psutil.pid_exists(process.pid)
    assert process.stop_group() is False  # a second stop finds nothing to signal


def test_a_group_that_ignores_sigterm_is_killed(started, tmp_path):
    process = started(ignore_term=True)
    process.wait_healthy((tmp_path / "ready").exists, timeout=30, interval=0.05)

    begun = time.monotonic()
    assert process.stop_group(timeout=0.5, kill_timeout=5) is True

    assert 0.5 <= time.monotonic() - begun < 5
    assert _group_members(process.pid) == []
    assert process.returncode == -9


def test_a_process_that_exits_while_awaited_fails_with_its_code_and_log(tmp_path):
    process = ManagedProcess.start(
        [sys.executable, "-c", "import sys; print('model not found'); sys.exit(3)"], log_path=tmp_path / "server.log"
    )

    with pytest.raises(ProcessExited, match="stand-in exited with code 3") as exited:
        process.wait_healthy(lambda: False, timeout=30, interval=0.05, what="stand-in")

    assert exited.value.returncode == 3
    assert "model not found" in str(exited.value)
    assert process.stop_group() is False


def test_a_process_not_healthy_in_time_times_out_and_keeps_running(started):
    process = started()

    with pytest.raises(TimeoutError, match=r"^stand-in not healthy after 0\.3s$"):
        process.wait_healthy(lambda: False, timeout=0.3, interval=0.05, what="stand-in")

    assert process.alive()  # stopping it is the caller's decision


def test_a_recycled_pid_is_never_signalled(started):
    process = started()
    stranger = ManagedProcess(process.pid, process.create_time - 3600)  # same pid, another start time

    assert stranger.alive() is False
    assert stranger.stop_group(timeout=0.1) is False
    assert process.alive()
