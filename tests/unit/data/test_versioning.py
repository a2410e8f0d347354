"""The DVC data registry, on a real git + DVC repository and a real local DVC remote."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import threading
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from include.data.spec import load_spec
from include.data.versioning import DataRegistry, DatasetRef, DataVersionError, load
from include.settings import PROJECT_ROOT
from include.simulation.generate import generate_day

START, END = date(2026, 10, 1), date(2026, 10, 4)


def _frame(spec, first=START, days=3, rows=60) -> pd.DataFrame:
    return pd.concat(
        [generate_day(spec, first + timedelta(days=offset), rows, 7) for offset in range(days)], ignore_index=True
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commits(repo: Path) -> int:
    return int(_git(repo, "rev-list", "--count", "HEAD"))


@pytest.fixture(scope="module", autouse=True)
def private_dvc_site_cache(tmp_path_factory):
    # DVC keeps per-repo indexes under /var/tmp/dvc by default; keep every test registry's there.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path_factory.mktemp("dvc-site-cache")))
        yield


@pytest.fixture(scope="module")
def demo_spec(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return load_spec(PROJECT_ROOT / "include/datasets/customer_churn.yaml", environ={"MLOPS_HOME": str(home)})


@pytest.fixture(scope="module")
def shared(tmp_path_factory, demo_spec):
    """One registry with one snapshot, for the tests that only read it."""
    root = tmp_path_factory.mktemp("shared")
    registry = DataRegistry(root / "registry", str(root / "remote"))
    frame = _frame(demo_spec)
    return registry, frame, registry.snapshot(frame, "customer_churn", START, END)


@pytest.fixture
def private(tmp_path, demo_spec):
    """A registry of this test's own, with one snapshot, for tests that damage it."""
    registry = DataRegistry(tmp_path / "registry", str(tmp_path / "remote"))
    frame = _frame(demo_spec)
    return registry, frame, registry.snapshot(frame, "customer_churn", START, END)


def test_snapshot_commits_the_dvc_file_and_pushes_the_bytes(shared):
    registry, frame, ref = shared
    repo = registry.repo

    assert ref.path == "snapshots/customer_churn/2026-10-01_2026-10-04.parquet"
    assert (ref.rows, ref.window_start, ref.window_end) == (len(frame), "2026-10-01", "2026-10-04")
    assert ref.rev == _git(repo, "log", "-1", "--format=%H", "--", f"{ref.path}.dvc")
    assert len(ref.rev) == 40
    assert f"md5: {ref.md5}" in _git(repo, "show", f"{ref.rev}:{ref.path}.dvc")
    assert _git(repo, "log", "-1", "--format=%s", ref.rev) == (
        f"snapshot customer_churn 2026-10-01..2026-10-04, md5 {ref.md5}"
    )
    assert _git(repo, "status", "--porcelain") == ""
    assert (Path(registry.remote) / "files" / "md5" / ref.md5[:2] / ref.md5[2:]).is_file()


def test_registry_is_initialised_once_with_a_local_identity_and_no_analytics(shared, monkeypatch):
    registry, _, _ = shared
    repo = registry.repo
    commits = _commits(repo)

    registry.ensure()
    registry.ensure()

    assert _commits(repo) == commits
    assert _git(repo, "config", "--local", "user.email")
    config = (repo / ".dvc" / "config").read_text()
    assert "analytics = false" in config
    assert f"url = {registry.remote}" in config
    # DVC's own check, run the way the CLI runs it inside the registry, with no opt-out in the environment
    from dvc import analytics

    monkeypatch.delenv("DVC_NO_ANALYTICS", raising=False)
    monkeypatch.chdir(repo)
    assert analytics.is_enabled() is False


def test_a_new_remote_becomes_the_default_in_one_commit(tmp_path):
    DataRegistry(tmp_path / "registry", str(tmp_path / "remote-a")).ensure()
    moved = DataRegistry(tmp_path / "registry", str(tmp_path / "remote-b"))

    moved.ensure()
    moved.ensure()

    assert _commits(moved.repo) == 2
    assert _git(moved.repo, "log", "-1", "--format=%s") == f"data registry remote: {tmp_path / 'remote-b'}"
    assert f"url = {tmp_path / 'remote-b'}" in (moved.repo / ".dvc" / "config").read_text()
    assert _git(moved.repo, "status", "--porcelain") == ""


def test_same_data_gives_the_same_version_without_a_commit(shared, demo_spec):
    registry, frame, ref = shared
    commits = _commits(registry.repo)

    # equal content read afresh (another object, same values) must hash the same
    again = registry.snapshot(_frame(demo_spec), "customer_churn", START, END)

    assert again == ref
    assert _commits(registry.repo) == commits


def test_load_returns_the_identical_frame(shared):
    registry, frame, ref = shared
    pd.testing.assert_frame_equal(load(ref), frame)
    pd.testing.assert_frame_equal(registry.load(ref), frame)


def test_changed_content_is_a_new_version_and_old_versions_still_load(shared, demo_spec):
    registry, _, _ = shared
    start, end = date(2026, 11, 1), date(2026, 11, 3)
    first = _frame(demo_spec, start, days=2)
    changed = first.copy()
    changed.loc[0, "monthly_charges"] += 1.0

    ref_first = registry.snapshot(first, "customer_churn", start, end)
    ref_changed = registry.snapshot(changed, "customer_churn", start, end)

    assert ref_changed.path == ref_first.path
    assert ref_changed.md5 != ref_first.md5 and ref_changed.rev != ref_first.rev
    pd.testing.assert_frame_equal(load(ref_first), first)
    pd.testing.assert_frame_equal(load(ref_changed), changed)


def test_ref_travels_as_json(shared):
    _, _, ref = shared
    assert DatasetRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    broken = ref.to_dict()
    del broken["md5"]
    with pytest.raises(ValueError, match="md5"):
        DatasetRef.from_dict(broken)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rev": "0123456789abcdef0123456789abcdef01234567"}, "does not exist in the registry"),
        ({"path": "snapshots/customer_churn/2020-01-01_2020-01-02.parquet"}, "is not tracked at rev"),
        ({"md5": "0" * 32}, "hash to md5"),
        ({"repo": "/nonexistent/registry"}, "is not a data registry"),
    ],
)
def test_a_version_that_cannot_be_produced_exactly_is_an_error_naming_it(shared, change, reason):
    _, _, ref = shared
    wrong = dataclasses.replace(ref, **change)

    with pytest.raises(DataVersionError, match=reason) as error:
        load(wrong)

    message = str(error.value)
    assert wrong.path in message and wrong.rev in message and wrong.md5 in message


def test_load_fetches_from_the_remote_when_the_cache_is_gone(private):
    registry, frame, ref = private
    shutil.rmtree(registry.repo / ".dvc" / "cache")
    (registry.repo / ref.path).unlink()

    pd.testing.assert_frame_equal(load(ref), frame)

    shutil.rmtree(registry.remote)
    with pytest.raises(DataVersionError, match="neither the DVC cache nor the DVC remote") as error:
        load(ref)
    assert ref.md5 in str(error.value) and ref.rev in str(error.value)


def test_load_reads_the_bytes_from_the_remote_only(private):
    registry, _, ref = private
    shutil.rmtree(registry.repo / ".dvc" / "cache")
    (registry.repo / ref.path).unlink()
    # the remote's copy is damaged: the md5 check must catch it rather than return other data
    stored = Path(registry.remote) / "files" / "md5" / ref.md5[:2] / ref.md5[2:]
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")

    with pytest.raises(DataVersionError, match="hash to md5") as error:
        load(ref)
    assert ref.rev in str(error.value) and ref.md5 in str(error.value)


def test_load_makes_no_network_call(shared, monkeypatch):
    _, frame, ref = shared
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network call to {address} during load")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    pd.testing.assert_frame_equal(load(ref), frame)
    assert attempts == []


def test_concurrent_snapshots_are_serialised(tmp_path, demo_spec):
    windows = [(date(2026, 10, 1), date(2026, 10, 3)), (date(2026, 10, 3), date(2026, 10, 5))]
    frames = [_frame(demo_spec, start, days=2) for start, _ in windows]
    refs, errors = [None, None], []

    def snapshot(index):
        try:
            # separate instances, as two Airflow tasks would have
            registry = DataRegistry(tmp_path / "registry", str(tmp_path / "remote"))
            refs[index] = registry.snapshot(frames[index], "customer_churn", *windows[index])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=snapshot, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    repo = tmp_path / "registry"
    assert _commits(repo) == 3  # initialisation + one commit per snapshot
    assert _git(repo, "status", "--porcelain") == ""
    for ref, frame in zip(refs, frames, strict=False):
        pd.testing.assert_frame_equal(load(ref), frame)


def test_bad_snapshot_arguments_are_rejected(shared, demo_spec):
    registry, frame, _ = shared
    with pytest.raises(ValueError, match="window"):
        registry.snapshot(frame, "customer_churn", END, START)
    with pytest.raises(ValueError, match="dataset name"):
        registry.snapshot(frame, "../escape", START, END)
    with pytest.raises(ValueError, match="DataFrame"):
        registry.snapshot(frame.to_dict(), "customer_churn", START, END)


def test_snapshot_pushed_to_a_git_remote_is_readable_from_there_alone(tmp_path, spec):
    """kubernetes profile: the pod has only the git URL and the DVC remote, not the worker's folder."""
    import shutil
    import subprocess
    from datetime import date

    from include.data.versioning import DataRegistry, DatasetRef, load
    from include.simulation.generate import generate_day

    bare = tmp_path / "registry.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    registry = DataRegistry(tmp_path / "worker-copy", str(tmp_path / "dvc-remote"), git_remote=str(bare))
    frame = generate_day(spec, date(2026, 5, 1), 200, seed=3)
    ref = registry.snapshot(frame, spec.name, date(2026, 5, 1), date(2026, 5, 2))
    assert ref.repo == str(bare)
    shutil.rmtree(tmp_path / "worker-copy")  # nothing local is left to read from
    loaded = load(DatasetRef.from_dict(ref.to_dict()))
    assert len(loaded) == 200 and list(loaded.columns) == list(frame.columns)
