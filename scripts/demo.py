"""``make demo``: the training loop on the local profile, through the real scheduler.

Sets up what is missing, lands the demo data, starts Airflow in the background,
triggers ``ml_training`` through the REST API, follows it, and prints what
happened and where to look. ``make stop`` stops everything it started.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta

from scripts.local_stack import LocalStack

DAG_ID = "ml_training"
FINISHED = {"success", "failed"}


def land_demo_data(stack: LocalStack, days: int, rows_per_day: int, today: date) -> None:
    from include.data.generate import land_days
    from include.data.partitions import partition_dates
    from include.data.spec import load_spec

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    start = today - timedelta(days=days)
    wanted = {start + timedelta(days=i) for i in range(days)}
    if wanted <= set(partition_dates(spec)):
        print(f"demo data: {days} daily partitions already in {spec.location}")
        return
    land_days(spec, start, days, rows_per_day)
    print(f"demo data: landed {days} days x {rows_per_day} rows ({start}..{today - timedelta(days=1)}) "
          f"in {spec.location}")


def follow_run(client, run_id: str, timeout: float) -> dict:
    """Poll the run, printing each task's state when it changes, until it finishes."""
    seen: dict[str, str] = {}
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        run = client.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        for ti in sorted(client.task_instances(DAG_ID, run_id), key=lambda t: t.get("start_date") or "~"):
            state = ti.get("state") or "none"
            if seen.get(ti["task_id"], "none") != state:
                seen[ti["task_id"]] = state
                print(f"  [{time.monotonic() - started:6.0f}s] {ti['task_id']:<10} {state}", flush=True)
        if run["state"] in FINISHED:
            return run
        time.sleep(3)
    raise TimeoutError(f"{DAG_ID} run {run_id} still running after {timeout:.0f}s")


def xcom(client, run_id: str, task_id: str, key: str = "return_value"):
    response = client.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=60, help="days of demo data to land")
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the run")
    args = parser.parse_args(argv)

    started = time.monotonic()
    stack = LocalStack()
    print("setting up the local profile (Airflow DB, settings, MLflow, DVC)...", flush=True)
    stack.setup()
    land_demo_data(stack, args.days, args.rows_per_day, date.today())
    print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {stack.api_url}...", flush=True)
    stack.start()
    client = stack.api()
    client.wait_for_dag(DAG_ID)
    client.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = client.trigger(DAG_ID, {"reason": "make demo"})
    print(f"triggered {DAG_ID} run {run['dag_run_id']} through the REST API; following it:", flush=True)
    run = follow_run(client, run["dag_run_id"], args.timeout)
    ok = print_summary(stack, client, run)
    print(f"make demo took {time.monotonic() - started:.0f}s; Airflow keeps running until `make stop`.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
