"""Serving: the project's model server against ``mlflow models serve``, same model version, same load.

Both servers serve the same registered version of the demo model (``torch_mlp``)
from the same tracking store, one process each, on 127.0.0.1 of this machine:

- project: ``python -m include.serving`` as the local deployer starts it (inference
  log on, written to a scratch folder; Prometheus metrics on);
- MLflow: ``mlflow models serve -m models:/<name>/<version> --env-manager local``
  (its default: one uvicorn worker);
- shadow: the project's server in a shadow rollout, the champion answering and a second
  registered version (the candidate) scoring every row too, both answers logged: twice
  the model work per request.

The load generator (``benchmarks.loadgen``, its own process) keeps C connections
busy, each sending a one-row request in MLflow's ``dataframe_split`` format as soon
as its previous one answered, for a fixed time after a warm-up; the rows cycle
through 256 customers of the demo data. Before measuring, both servers must answer
every payload with the same probabilities.

    python -m benchmarks.serving
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from benchmarks.common import ROOT, WORK, median, project_env, quick, run_json, runs, save
from include.util.procs import ManagedProcess, ProcessExited
from scripts.local_stack import free_port

CONCURRENCY = (1, 8, 32)
PAYLOAD_ROWS = 256


def payloads() -> list[dict]:
    from benchmarks.model import demo_frame
    from include.training.model import as_model_input

    spec, frame = demo_frame(days=1, rows_per_day=PAYLOAD_ROWS, seed=11)
    features = as_model_input(frame, spec)
    split = json.loads(features.to_json(orient="split", index=False))
    return [{"dataframe_split": {"columns": split["columns"], "data": [row]}} for row in split["data"]]


@contextmanager
def server(command: list[str], url: str, env: dict[str, str], log_path: Path, timeout: float = 180) -> Iterator[str]:
    """Start ``command`` in a session of its own, wait until ``url/health`` answers, stop it (and its children)."""

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    shown = f"`{' '.join(command[:4])}...`"
    process = ManagedProcess.start(command, log_path=log_path, env=env, cwd=ROOT)
    try:
        try:
            process.wait_healthy(
                healthy,
                timeout,
                interval=0.5,
                on_timeout=lambda: TimeoutError(f"{shown} not healthy after {timeout:.0f}s; see {log_path}"),
            )
        except ProcessExited as exited:
            raise RuntimeError(f"{shown} exited with {exited.returncode}; see {log_path}") from None
        yield url
    finally:
        process.stop_group(timeout=20)
        process.wait()


def project_server(
    tracking_uri: str, name: str, version: str, log_root: Path, log_path: Path, shadow_candidate: str | None = None
):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "include.serving",
        "--model-name",
        name,
        "--version",
        version,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--inference-log",
        str(log_root),
    ]
    if shadow_candidate is not None:
        # a shadow rollout: every request is also scored by the candidate, and both answers are logged
        command += ["--candidate-version", shadow_candidate, "--rollout-mode", "shadow"]
    env = project_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_REGISTRY_URI=tracking_uri, PYTHONUNBUFFERED="1")
    return server(command, f"http://127.0.0.1:{port}", env, log_path)


def mlflow_server(tracking_uri: str, name: str, version: str, log_path: Path):
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [
        mlflow,
        "models",
        "serve",
        "-m",
        f"models:/{name}/{version}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    # the model's torch thread count as the project's server sets it, so that the two
    # servers differ in how they serve, not in how the model computes
    env = project_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_REGISTRY_URI=tracking_uri,
        PYTHONUNBUFFERED="1",
        MLOPS_TORCH_THREADS="1",
    )
    return server(command, f"http://127.0.0.1:{port}", env, log_path)


def _probabilities(url: str, bodies: list[dict]) -> list[float]:
    answers = []
    with requests.Session() as session:
        for body in bodies:
            response = session.post(f"{url}/invocations", json=body, timeout=30)
            response.raise_for_status()
            answers.append(float(response.json()["predictions"][0]["probability"]))
    return answers


def load(url: str, payload_file: Path, concurrency: int, seconds: float, warmup: float) -> dict:
    return run_json(
        [
            "-m",
            "benchmarks.loadgen",
            "--url",
            f"{url}/invocations",
            "--payloads",
            str(payload_file),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
        ],
        timeout=seconds + warmup + 120,
    )


def main() -> int:
    from benchmarks.model import candidate_version, registered_version

    repetitions = runs(3)
    seconds, warmup = (3.0, 1.0) if quick() else (10.0, 2.0)
    tracking_uri, name, version = registered_version()
    candidate = candidate_version()
    folder = WORK / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    bodies = payloads()
    payload_file = folder / "payloads.json"
    payload_file.write_text(json.dumps(bodies))

    samples: dict[str, dict[int, list[dict]]] = {
        "project": {c: [] for c in CONCURRENCY},
        "mlflow": {c: [] for c in CONCURRENCY},
        "shadow": {c: [] for c in CONCURRENCY},
    }
    with (
        tempfile.TemporaryDirectory(prefix="serving-bench-log-") as log_root,
        project_server(tracking_uri, name, version, Path(log_root), folder / "project-server.log") as ours,
        tempfile.TemporaryDirectory(prefix="serving-bench-shadow-log-") as shadow_log_root,
        project_server(
            tracking_uri, name, version, Path(shadow_log_root), folder / "shadow-server.log", shadow_candidate=candidate
        ) as shadow,
        mlflow_server(tracking_uri, name, version, folder / "mlflow-server.log") as theirs,
    ):
        ours_answers, their_answers = _probabilities(ours, bodies), _probabilities(theirs, bodies)
        # in shadow the champion answers: the same probabilities, whatever the candidate says
        shadow_answers = _probabilities(shadow, bodies)
        largest_gap = max(
            abs(a - b)
            for answers in (their_answers, shadow_answers)
            for a, b in zip(ours_answers, answers, strict=True)
        )
        if largest_gap > 1e-6:
            raise RuntimeError(f"the two servers disagree on the same model version (by up to {largest_gap})")
        for repetition in range(repetitions):
            for concurrency in CONCURRENCY:
                # the servers alternate at each level, so that a slow spell of the machine hits both
                for tool, url in (("mlflow", theirs), ("project", ours), ("shadow", shadow)):
                    result = load(url, payload_file, concurrency, seconds, warmup)
                    samples[tool][concurrency].append(result)
                    print(
                        f"  serving {tool:<7} c={concurrency:<3} run {repetition + 1}/{repetitions}: "
                        f"{result['throughput']:8.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                        f"p99 {result['p99_ms']:6.2f} ms",
                        flush=True,
                    )

    levels = []
    for concurrency in CONCURRENCY:
        ours_runs, their_runs = samples["project"][concurrency], samples["mlflow"][concurrency]
        shadow_runs = samples["shadow"][concurrency]
        levels.append(
            {
                "concurrency": concurrency,
                "project_throughput": median([r["throughput"] for r in ours_runs]),
                "mlflow_throughput": median([r["throughput"] for r in their_runs]),
                "project_p50_ms": median([r["p50_ms"] for r in ours_runs]),
                "mlflow_p50_ms": median([r["p50_ms"] for r in their_runs]),
                "project_p99_ms": median([r["p99_ms"] for r in ours_runs]),
                "mlflow_p99_ms": median([r["p99_ms"] for r in their_runs]),
                "throughput_ratio": median(
                    [o["throughput"] / t["throughput"] for o, t in zip(ours_runs, their_runs, strict=False)]
                ),
                "shadow_throughput": median([r["throughput"] for r in shadow_runs]),
                "shadow_p99_ms": median([r["p99_ms"] for r in shadow_runs]),
                "shadow_throughput_ratio": median(
                    [s["throughput"] / t["throughput"] for s, t in zip(shadow_runs, their_runs, strict=True)]
                ),
                "runs": [
                    {"project": o, "mlflow": t, "shadow": s}
                    for o, t, s in zip(ours_runs, their_runs, shadow_runs, strict=True)
                ],
            }
        )
    save(
        "serving",
        {
            "model": f"models:/{name}/{version}",
            "shadow_candidate": f"models:/{name}/{candidate}",
            "model_type": "torch_mlp",
            "runs": repetitions,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "largest_answer_gap": largest_gap,
            "levels": levels,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
