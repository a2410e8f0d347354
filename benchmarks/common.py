"""What every benchmark shares: where it works, how it repeats, how it reads time and memory."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from include.util.fs import write_atomically

ROOT = Path(__file__).resolve().parents[1]
# git-ignored: the benchmarks' own MLflow store, Airflow home, data and intermediate results
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "benchmarks" / ".work")).resolve()
RESULTS_DIR = WORK / "results"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"


def quick() -> bool:
    """``BENCH_QUICK=1``: fewer repetitions and smaller cases, for a quick look (not for the table)."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def runs(full: int, quick_runs: int = 1) -> int:
    return quick_runs if quick() else full


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def bytecode_env() -> dict[str, str]:
    """Python's bytecode cache on, kept out of the source tree: a long-running deployment compiles
    each module once, so a figure must not include compiling the project's modules every time
    (an environment with PYTHONDONTWRITEBYTECODE set would make every process do so)."""
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(WORK / "pycache")}


def project_env(**extra: str) -> dict[str, str]:
    """The environment a benchmark's subprocess runs in: the project and its plugins importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    # the virtual environment's commands (uvicorn, mlflow, airflow) first, as `make` puts them
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    env.update(bytecode_env())
    env.update(extra)
    return env


def run_json(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh interpreter; its last stdout line is the JSON it reports."""
    completed = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env or project_env(), cwd=ROOT
    )
    if completed.returncode != 0:
        raise RuntimeError(f"`python {' '.join(args)}` failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"`python {' '.join(args)}` reported nothing:\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Restart the kernel's RSS high-water mark (VmHWM) at the current RSS; False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall time and memory of the block: ``seconds``, ``peak_added_bytes`` (the high-water mark of
    RSS during the block minus RSS before it) and ``peak_rss_bytes`` (the process's own high-water mark)."""
    result: dict[str, float] = {}
    before = rss_bytes()
    if not reset_peak_rss():
        raise RuntimeError(
            "cannot reset the RSS high-water mark (/proc/self/clear_refs): peak memory "
            "of a block cannot be measured here"
        )
    started = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - started
    peak = peak_rss_bytes()
    result["peak_rss_bytes"] = peak
    result["peak_added_bytes"] = max(0, peak - before)


# ------------------------------------------------------------------------------------------ results
def save(section: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``<RESULTS_DIR>/<section>.json`` (atomically: an interrupted run leaves the
    previous result whole). Returns the file's path. Raises ``OSError`` when it cannot be written."""
    path = RESULTS_DIR / f"{section}.json"
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True, default=str))
    return path


def load(section: str) -> dict[str, Any] | None:
    try:
        return json.loads((RESULTS_DIR / f"{section}.json").read_text())
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def gpu_description() -> str | None:
    """The GPU torch sees, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"


def machine() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for name in (
        "apache-airflow",
        "mlflow",
        "evidently",
        "torch",
        "scikit-learn",
        "numpy",
        "pandas",
        "scipy",
        "fastapi",
        "uvicorn",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": round(_memory_gib(), 1),
        "gpu": gpu_description(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
