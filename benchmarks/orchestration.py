"""Orchestration overhead and drift-to-retrain latency, through the real local Airflow.

The local profile as ``make demo`` runs it (api-server, scheduler, dag-processor,
triggerer; LocalExecutor on SQLite), with its own state folder
(``benchmarks/.work/airflow-stack``, reset at the start) and free ports:

- *overhead*: ``ml_training`` is triggered through the REST API and followed to its
  end; trigger-to-done wall time (from just before the ``POST`` to the run's end
  date) against the sum of its tasks' own durations (as Airflow records them). The
  difference, divided by the tasks that ran, is the overhead per task: scheduling,
  queueing, starting a task process, parsing the DAG file in it, reporting back.
  The retraining runs below count too, triggered when ``trigger_retraining`` ended.
- *drift-to-retrain latency*: after real traffic with covariate drift has been
  served and logged, ``drift_monitor`` runs for a drifted day; its
  ``trigger_retraining`` task decides to retrain and creates the ``ml_training``
  run. The latency is the start of that run's first task minus the end of
  ``trigger_retraining``. Each window is followed to the end of its training run
  before the next one (a queued or running training blocks a new trigger), with
  the cooldown set to 0 so that every drifted window may trigger.

Every process started here is stopped at the end, also on failure.

    python -m benchmarks.orchestration
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta

from benchmarks.common import WORK, bytecode_env, median, quick, runs, save
from include.util.wait import wait_until

HOME = WORK / "airflow-stack"
TRAINING_DAG_ID = "ml_training"
DRIFT_DAG_ID = "drift_monitor"
FINISHED = {"success", "failed"}
HISTORY_DAYS = 28
ROWS_PER_DAY = 400
TRAFFIC_ROWS_PER_DAY = 300
RUN_TIMEOUT = 900
# what every training run asks for: the demo's defaults, on the landed history
TRAINING_CONF = {"training_window_days": HISTORY_DAYS, "reason": "benchmark"}


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait_for_run(client, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    def finished() -> dict | None:
        response = client.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return response.json() if response.status_code == 200 and response.json()["state"] in FINISHED else None

    return wait_until(finished, timeout, interval=1, what=f"{dag_id} run {run_id} not finished")


def _wait_for_task_start(client, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> list[dict]:
    def started() -> list[dict] | None:
        response = client.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        if response.status_code == 200:
            instances = response.json()["task_instances"]
            if any(ti.get("start_date") for ti in instances):
                return instances
        return None

    return wait_until(started, timeout, interval=1, what=f"no task of {dag_id} run {run_id} started")


def training_run(client, conf: dict) -> dict:
    """Trigger ml_training through the REST API, follow it, and measure it."""
    triggered_at = datetime.now(UTC)
    run = client.trigger(TRAINING_DAG_ID, conf)
    finished = _wait_for_run(client, TRAINING_DAG_ID, run["dag_run_id"])
    if finished["state"] != "success":
        raise RuntimeError(f"{TRAINING_DAG_ID} run {run['dag_run_id']} ended {finished['state']}")
    return {"run_id": run["dag_run_id"], **_measure_run(client, finished, triggered_at)}


def _measure_run(client, run: dict, triggered_at: datetime) -> dict:
    instances = client.task_instances(TRAINING_DAG_ID, run["dag_run_id"])
    ran = [ti for ti in instances if ti.get("start_date") and ti.get("end_date") and ti.get("state") == "success"]
    task_seconds = sum(float(ti["duration"]) for ti in ran)
    wall = (_parse_time(run["end_date"]) - triggered_at).total_seconds()
    return {
        "wall_seconds": wall,
        "task_seconds": task_seconds,
        "tasks": len(ran),
        "overhead_seconds": wall - task_seconds,
        "overhead_per_task_seconds": (wall - task_seconds) / len(ran),
        "durations": {ti["task_id"]: float(ti["duration"]) for ti in ran},
    }


def drift_window(client, day: date) -> dict:
    """drift_monitor for [day, day + 1), which must decide to retrain; the latency to the retraining's first task."""
    logical_date = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    run = client.call(
        "POST",
        f"/dags/{DRIFT_DAG_ID}/dagRuns",
        json={"logical_date": logical_date.isoformat(), "conf": {"min_rows": 100, "cooldown_days": 0}},
    )
    finished = _wait_for_run(client, DRIFT_DAG_ID, run["dag_run_id"])
    states = {ti["task_id"]: ti for ti in client.task_instances(DRIFT_DAG_ID, run["dag_run_id"])}
    trigger = states["trigger_retraining"]
    if finished["state"] != "success" or trigger.get("state") != "success":
        raise RuntimeError(
            f"drift window {day} did not trigger a retraining: "
            f"{ {task: ti.get('state') for task, ti in states.items()} }"
        )
    training_run_id = f"drift__{day.isoformat()}"
    instances = _wait_for_task_start(client, TRAINING_DAG_ID, training_run_id)
    first = min((ti for ti in instances if ti.get("start_date")), key=lambda ti: _parse_time(ti["start_date"]))
    latency = (_parse_time(first["start_date"]) - _parse_time(trigger["end_date"])).total_seconds()
    training = _wait_for_run(client, TRAINING_DAG_ID, training_run_id)
    if training["state"] != "success":
        raise RuntimeError(f"{TRAINING_DAG_ID} run {training_run_id} ended {training['state']}")
    # the retraining run is an ml_training run too, triggered when trigger_retraining ended
    measured = _measure_run(client, training, _parse_time(trigger["end_date"]))
    return {
        "window": day.isoformat(),
        "latency_seconds": latency,
        "first_task": first["task_id"],
        "decision_task_seconds": float(trigger["duration"]),
        "check_drift_seconds": float(states["check_drift"]["duration"]),
        "training": {"run_id": training_run_id, **measured},
    }


def main() -> int:
    from include.data.spec import load_spec
    from include.simulation.generate import DriftConfig, land_days
    from include.simulation.traffic import simulate
    from scripts.local_stack import LocalStack, free_port

    training_runs, drift_windows = runs(2, 1), runs(3, 1)
    today = datetime.now(UTC).date()
    # traffic shortly before today, history before it: the nightly run that unpausing creates
    # (yesterday's window, logical date yesterday) finds no traffic and ends at once, and no
    # drifted window's manual run (logical date: the day after the window) falls on its date
    traffic_start = today - timedelta(days=drift_windows + 4)
    history_start = traffic_start - timedelta(days=HISTORY_DAYS)
    training_conf = {**TRAINING_CONF, "training_window_end": (traffic_start - timedelta(days=1)).isoformat()}

    if HOME.exists():
        shutil.rmtree(HOME)
    stack = LocalStack(
        home=HOME, api_port=free_port(), extra_env={"MLOPS_SERVING_PORT": str(free_port()), **bytecode_env()}
    )
    try:
        started = time.monotonic()
        stack.setup()
        spec = load_spec(stack.settings.dataset_spec, stack.env())
        land_days(spec, history_start, HISTORY_DAYS, ROWS_PER_DAY)
        stack.start(timeout=300)
        client = stack.api()
        for dag_id in (TRAINING_DAG_ID, DRIFT_DAG_ID):
            client.wait_for_dag(dag_id, timeout=300)
            client.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        print(f"  orchestration: local Airflow up in {time.monotonic() - started:.0f}s", flush=True)

        overhead = []
        for index in range(training_runs):
            result = training_run(client, training_conf)
            overhead.append(result)
            print(
                f"  orchestration: ml_training run {index + 1}/{training_runs}: {result['wall_seconds']:.1f}s "
                f"trigger-to-done, {result['task_seconds']:.1f}s in {result['tasks']} tasks, overhead "
                f"{result['overhead_per_task_seconds']:.1f}s per task",
                flush=True,
            )

        # served traffic: one undrifted day, then drifted days (one per drift window)
        simulate(
            stack.settings,
            spec,
            stack.settings.serving_url,
            traffic_start,
            drift_windows + 1,
            TRAFFIC_ROWS_PER_DAY,
            drift=DriftConfig(kind="covariate", start=traffic_start + timedelta(days=1), strength=1.0),
        )
        latencies = []
        for offset in range(1, drift_windows + 1):
            window = drift_window(client, traffic_start + timedelta(days=offset))
            latencies.append(window)
            print(
                f"  orchestration: drift window {window['window']}: retraining's first task started "
                f"{window['latency_seconds']:.1f}s after the decision",
                flush=True,
            )
    finally:
        stack.stop()

    # every ml_training run counts: those triggered through the REST API and those drift triggered
    overhead += [window["training"] for window in latencies]
    save(
        "orchestration",
        {
            "training_runs": overhead,
            "drift_windows": latencies,
            "wall_seconds": median([r["wall_seconds"] for r in overhead]),
            "task_seconds": median([r["task_seconds"] for r in overhead]),
            "tasks": overhead[0]["tasks"],
            "overhead_seconds": median([r["overhead_seconds"] for r in overhead]),
            "overhead_per_task_seconds": median([r["overhead_per_task_seconds"] for r in overhead]),
            "ratio": median([r["wall_seconds"] / r["task_seconds"] for r in overhead]),
            "latency_seconds": median([w["latency_seconds"] for w in latencies]),
            "latency_max_seconds": max(w["latency_seconds"] for w in latencies),
            "quick": quick(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
