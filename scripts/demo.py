"""``make demo``: the whole loop on the local profile, through the real scheduler.

1. Sets up what is missing, lands 50 days of history, starts Airflow in the
   background, triggers ``ml_training`` through the REST API and follows it to a
   deployed champion.
2. Sends 10 days of traffic to the served model as real requests, with covariate
   drift from the 6th day, and lands the labels.
3. Backfills ``drift_monitor`` over those days through Airflow's REST API and
   follows the retraining it triggers, once, through the gate to a new champion.

Each run starts from a fresh local state (``.local/``), so the story is the same
every time. ``make stop`` stops everything it started.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone

from scripts.local_stack import LocalStack

DAG_ID = "ml_training"
DRIFT_DAG_ID = "drift_monitor"
FINISHED = {"success", "failed"}


def land_history(stack: LocalStack, first_day: date, days: int, rows_per_day: int) -> None:
    from include.data.generate import land_days
    from include.data.spec import load_spec

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    land_days(spec, first_day, days, rows_per_day)
    print(f"demo data: landed {days} days x {rows_per_day} rows ({first_day}..{first_day + timedelta(days=days - 1)}) "
          f"in {spec.location}")


def follow_run(client, run_id: str, timeout: float, dag_id: str = DAG_ID) -> dict:
    """Poll the run, printing each task's state when it changes, until it finishes."""
    seen: dict[str, str] = {}
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        run = client.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        for ti in sorted(client.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or "~"):
            state = ti.get("state") or "none"
            if seen.get(ti["task_id"], "none") != state:
                seen[ti["task_id"]] = state
                print(f"  [{time.monotonic() - started:6.0f}s] {ti['task_id']:<10} {state}", flush=True)
        if run["state"] in FINISHED:
            return run
        time.sleep(3)
    raise TimeoutError(f"{dag_id} run {run_id} still running after {timeout:.0f}s")


def xcom(client, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID):
    response = client.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                              params={"deserialize": True})
    return response.json().get("value") if response.status_code == 200 else None


def print_summary(stack: LocalStack, client, run: dict) -> bool:
    from include import registry, tracking

    run_id = run["dag_run_id"]
    print("\n" + "=" * 72)
    print(f"ml_training run {run_id}: {run['state'].upper()}")
    print("-" * 72)
    for ti in sorted(client.task_instances(DAG_ID, run_id), key=lambda t: t.get("start_date") or "~"):
        duration = f"{ti['duration']:.1f}s" if ti.get("duration") else ""
        print(f"  {ti['task_id']:<10} {ti.get('state') or 'none':<10} {duration}")
    decision = xcom(client, run_id, "gate", "decision")
    if decision:
        print("-" * 72)
        print(f"gate: {'PASSED' if decision['passed'] else 'REJECTED'}: {decision['reason']}")
        for check in decision.get("checks", []):
            value = "n/a" if check.get("value") is None else f"{check['value']:.4f}"
            threshold = "" if check.get("threshold") is None else f" (threshold {check['threshold']:.4f})"
            print(f"  {'ok ' if check['passed'] else 'FAIL'} {check['name']:<40} {value}{threshold}")
    version = xcom(client, run_id, "register")
    deployed = xcom(client, run_id, "deploy")
    tracking.configure(stack.settings)
    champion = registry.alias_version(stack.settings.model_name, registry.CHAMPION)
    print("-" * 72)
    print(f"model version : {version or 'none registered'}")
    print(f"champion      : {stack.settings.model_name} v{champion}" if champion else "champion      : none")
    if deployed:
        print(f"serving       : {deployed['url']}/invocations (model v{deployed['version']}, "
              f"previous champion: {deployed['previous_champion'] or 'none'})")
    print(f"Airflow UI    : {stack.api_url}/dags/{DAG_ID}/runs/{run_id}  "
          f"(user admin, password {stack.admin_password()})")
    print(f"MLflow        : {stack.settings.tracking_uri}  "
          f"(browse: mlflow ui --backend-store-uri {stack.settings.tracking_uri} --host 127.0.0.1)")
    print(f"task logs     : {stack.airflow_home / 'logs'}")
    print("stop it all   : make stop")
    print("=" * 72)
    return run["state"] == "success"


def simulate_traffic(stack: LocalStack, first_day: date, days: int, drift_day: date, rows_per_day: int):
    from include.data.generate import DriftConfig
    from include.data.spec import load_spec
    from include.monitoring.traffic import simulate

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    print(f"\nsending {days} days of traffic ({first_day}..{first_day + timedelta(days=days - 1)}) to "
          f"{stack.settings.serving_url}, covariate drift from {drift_day}...", flush=True)
    summaries = simulate(stack.settings, spec, stack.settings.serving_url, first_day, days, rows_per_day,
                         drift=DriftConfig(kind="covariate", start=drift_day, strength=1.0))
    for day in summaries:
        print(f"  {day.day}  {day.rows} rows in {day.requests} requests  {'drifted' if day.drifted else 'normal '}  "
              f"mean p(churn) {day.mean_probability:.3f}")
    return summaries


def backfill_drift_monitor(client, first_day: date, last_day: date, timeout: float) -> list[dict]:
    """Backfill drift_monitor over [first_day, last_day] one window at a time; the runs, in date order."""
    to_utc = lambda day: datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc).isoformat()  # noqa: E731
    backfill = client.create_backfill(
        DRIFT_DAG_ID, to_utc(first_day), to_utc(last_day), max_active_runs=1, reprocess_behavior="completed",
        # backfills only report drift unless asked: here the story is to retrain from history
        dag_run_conf={"allow_backfill_retrain": True})
    print(f"\nbackfilling {DRIFT_DAG_ID} {first_day}..{last_day} through the REST API (backfill {backfill['id']}), "
          f"one window at a time:", flush=True)
    deadline = time.monotonic() + timeout
    reported: set[str] = set()
    while time.monotonic() < deadline:
        runs = client.call("GET", f"/dags/{DRIFT_DAG_ID}/dagRuns",
                           params={"run_type": "backfill", "order_by": "logical_date", "limit": 100})["dag_runs"]
        runs = [r for r in runs if r.get("backfill_id") in (None, backfill["id"])]
        for run in runs:
            if run["state"] in FINISHED and run["dag_run_id"] not in reported:
                reported.add(run["dag_run_id"])
                print("  " + describe_window(client, run), flush=True)
        if client.call("GET", f"/backfills/{backfill['id']}").get("completed_at") and \
                all(r["state"] in FINISHED for r in runs):
            return runs
        time.sleep(3)
    raise TimeoutError(f"backfill {backfill['id']} not finished after {timeout:.0f}s")


def window_outcome(client, run: dict) -> dict:
    metrics = xcom(client, run["dag_run_id"], "check_drift", dag_id=DRIFT_DAG_ID) or {}
    decision = xcom(client, run["dag_run_id"], "trigger_retraining", "decision", dag_id=DRIFT_DAG_ID) or {}
    return {"window": run["data_interval_start"][:10], "state": run["state"], "rows": metrics.get("rows"),
            "drift_share": metrics.get("drift_share"), "outcome": decision.get("outcome", "skipped"),
            "reason": decision.get("reason", "see the check_drift log")}


def describe_window(client, run: dict) -> str:
    window = window_outcome(client, run)
    share = "   n/a" if window["drift_share"] is None else f"{window['drift_share']:6.2f}"
    return f"{window['window']}  rows {window['rows'] or 0:>5}  drift share {share}  {window['outcome']:<8} {window['reason']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history-days", type=int, default=50, help="days of labelled history before the traffic")
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--traffic-days", type=int, default=10, help="days of simulated traffic (N)")
    parser.add_argument("--drift-from-day", type=int, default=6, help="first drifted traffic day, 1-based (K)")
    parser.add_argument("--traffic-rows-per-day", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for each stage")
    args = parser.parse_args(argv)
    if not 1 <= args.drift_from_day <= args.traffic_days:
        parser.error("--drift-from-day must be between 1 and --traffic-days")

    started = time.monotonic()
    today = date.today()
    traffic_start = today - timedelta(days=args.traffic_days)
    history_start = traffic_start - timedelta(days=args.history_days)
    drift_day = traffic_start + timedelta(days=args.drift_from_day - 1)

    stack = LocalStack()
    if stack.home.exists():
        print(f"resetting the demo state in {stack.home} (Airflow, MLflow, DVC, logs) for a clean run...", flush=True)
        stack.stop()
        shutil.rmtree(stack.home)
    print("setting up the local profile (Airflow DB, settings, MLflow, DVC)...", flush=True)
    stack.setup()
    land_history(stack, history_start, args.history_days, args.rows_per_day)
    print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {stack.api_url}...", flush=True)
    stack.start()
    client = stack.api()
    for dag_id in (DAG_ID, DRIFT_DAG_ID):
        client.wait_for_dag(dag_id)
    # Both DAGs run: ml_training when triggered, drift_monitor nightly (and its backfill:
    # the scheduler starts no run, backfill or not, of a paused DAG)
    for dag_id in (DAG_ID, DRIFT_DAG_ID):
        client.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    # 1. the first champion, from the history
    run = client.trigger(DAG_ID, {"reason": "make demo: first model",
                                  "training_window_end": (traffic_start - timedelta(days=1)).isoformat()})
    print(f"triggered {DAG_ID} run {run['dag_run_id']} through the REST API; following it:", flush=True)
    run = follow_run(client, run["dag_run_id"], args.timeout)
    if not print_summary(stack, client, run):
        return 1

    # 2. traffic, drifting from day K
    simulate_traffic(stack, traffic_start, args.traffic_days, drift_day, args.traffic_rows_per_day)

    # 3. the nightly drift check over those days, as a backfill
    runs = backfill_drift_monitor(client, traffic_start, today - timedelta(days=1), args.timeout)
    windows = [window_outcome(client, r) for r in runs]
    fired = [w for w in windows if w["outcome"] == "retrain"]
    retraining = client.call("GET", f"/dags/{DAG_ID}/dagRuns",
                             params={"run_id_pattern": "drift__%", "limit": 100}).get("dag_runs", [])
    retraining = [r for r in retraining if r["dag_run_id"].startswith("drift__")]
    print(f"\nretraining fired from {len(fired)} window(s): {', '.join(w['window'] for w in fired) or 'none'}; "
          f"{len(retraining)} {DAG_ID} run(s) created by drift_monitor")
    ok = len(fired) == 1 and len(retraining) == 1
    if retraining:
        print(f"following {DAG_ID} run {retraining[0]['dag_run_id']}:", flush=True)
        retrain_run = follow_run(client, retraining[0]["dag_run_id"], args.timeout)
        ok = print_summary(stack, client, retrain_run) and ok

    print("\ndrift per simulated day (drift_monitor backfill):")
    print(f"  {'window':<10}  {'rows':>5}  {'drift share':>11}  outcome")
    for window in windows:
        share = "n/a" if window["drift_share"] is None else f"{window['drift_share']:.2f}"
        mark = "  <- drift from here" if window["window"] == drift_day.isoformat() else ""
        print(f"  {window['window']:<10}  {window['rows'] or 0:>5}  {share:>11}  {window['outcome']}{mark}")
    print(f"reports: {stack.settings.reports}/drift/<day>/report.html; MLflow experiment drift_monitoring")
    print(f"make demo took {time.monotonic() - started:.0f}s; Airflow keeps running until `make stop`.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
