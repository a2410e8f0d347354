"""``make demo``: the whole loop on the local profile, through the real scheduler.

On the generated churn data (``make demo``):

1. Sets up what is missing, lands 50 days of history, starts Airflow in the
   background, triggers ``ml_training`` through the REST API and follows it to a
   deployed champion.
2. Sends 10 days of traffic to the served model as real requests, with covariate
   drift from the 6th day, and lands the labels.
3. Backfills ``drift_monitor`` over those days through Airflow's REST API and
   follows the retraining it triggers, once, through the gate to a new champion.

On your own landed data (``make demo DATASET=path/to/spec.yaml``, after
``python -m include.data.ingest --spec SPEC EXPORT...``):

1. Checks that the spec's location holds landed days and that its expectation
   suite exists (a missing one is profiled from the landed data and written).
2. Trains the first champion on the first ~70% of the landed days, then replays
   the later days through the served champion with their own event times and labels
   (a table landed as a single day trains, deploys and stops there).
3. Checks the replayed days with ``drift_monitor``, in at most 5 windows, one manual
   run at a time, and follows any retraining a window triggers.

Each run starts from a fresh local state (``.local/``; with DATASET, everything
but ``.local/data/``, where your landed days may live), so the story is the same
every time. ``make stop`` stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from include.util.wait import wait_until
from scripts.demo_rollout import (
    DEMO_ROLLOUT,
    LIVE_ROWS,
    ROLLOUT_DAG_ID,
    follow_rollout,
    print_rollouts,
    start_worse_candidate,
    write_demo_spec,
)
from scripts.local_stack import LocalStack, models_page_url

DAG_ID = "ml_training"
DRIFT_DAG_ID = "drift_monitor"
FINISHED = {"success", "failed"}
# DATASET mode: what survives the reset under MLOPS_HOME (the landing zone of the user's data)
KEPT_FOLDER = "data"
HISTORY_SHARE = 0.7
MAX_WINDOWS = 5
# the largest drift_monitor window_days and ml_training training_window_days (plugins/mlops_airflow/params.py)
MAX_WINDOW_DAYS = 90
MAX_TRAINING_DAYS = 3660
MIN_ROWS_CAP = 200


# --------------------------------------------------------------------------- the plan (pure)
def calendar_days(first: date, last: date) -> int:
    """Calendar days from ``first`` to ``last``, both included."""
    return (last - first).days + 1


def span(days: Sequence[date]) -> str:
    """``first..last``, or the one day."""
    return days[0].isoformat() if days[0] == days[-1] else f"{days[0]}..{days[-1]}"


def split_days(days: Sequence[date], share: float = HISTORY_SHARE) -> tuple[list[date], list[date]]:
    """The landed days as (history the first champion learns from, later days to replay).

    The history is about the first ``share`` of the days (rounded half up), at least one
    day; when there are two days or more, at least one is left to replay. One day (a
    snapshot) is all history.
    """
    ordered = sorted(set(days))
    if not ordered:
        raise ValueError("no landed day to split")
    cut = max(1, min(len(ordered) - 1, math.floor(len(ordered) * share + 0.5)))
    return ordered[:cut], ordered[cut:]


def training_conf(name: str, history: Sequence[date]) -> dict:
    """The ``ml_training`` conf of the first champion: every history day, nothing later."""
    return {
        "reason": f"make demo: {name}",
        "model_type": "sklearn_hgb",
        "training_window_end": history[-1].isoformat(),
        "training_window_days": min(MAX_TRAINING_DAYS, calendar_days(history[0], history[-1])),
    }


def min_rows_for(rows: int) -> int:
    """A window's ``min_rows``: half its rows, at most 200, at least 1."""
    return max(1, min(MIN_ROWS_CAP, rows // 2))


@dataclass(frozen=True)
class Window:
    """One ``drift_monitor`` check: the replayed days ``first..last``, run at the day after ``last``."""

    first: date
    last: date
    days: int  # replayed days in first..last
    rows: int  # replayed rows the check compares (those of its last window_days days)
    window_days: int  # calendar days the check reads, ending with ``last``

    @property
    def min_rows(self) -> int:
        return min_rows_for(self.rows)

    @property
    def logical_date(self) -> date:
        # a manual run's data interval is the day that ends at its logical date: [last, last + 1)
        return self.last + timedelta(days=1)

    @property
    def conf(self) -> dict:
        return {"window_days": self.window_days, "min_rows": self.min_rows}

    @property
    def truncated(self) -> bool:
        """The window spans more calendar days than one check reads: its first days go unchecked."""
        return self.window_days < calendar_days(self.first, self.last)

    @property
    def label(self) -> str:
        return span([self.first, self.last])


def plan_windows(
    day_rows: Sequence[tuple[date, int]], max_windows: int = MAX_WINDOWS, max_window_days: int = MAX_WINDOW_DAYS
) -> list[Window]:
    """Split the replayed days ``(day, rows)`` into at most ``max_windows`` consecutive windows.

    Each window holds a run of consecutive replayed days (sizes differ by one at most,
    the earlier windows take the extra day); its check reads its calendar span, at most
    ``max_window_days`` days ending with its last day.
    """
    ordered = sorted(day_rows)
    if len({day for day, _ in ordered}) != len(ordered):
        raise ValueError("a replayed day appears twice")
    if max_windows < 1 or max_window_days < 1:
        raise ValueError("max_windows and max_window_days must be at least 1")
    count = min(max_windows, len(ordered))
    windows, start = [], 0
    for index in range(count):
        size = len(ordered) // count + (1 if index < len(ordered) % count else 0)
        chunk, start = ordered[start : start + size], start + size
        first, last = chunk[0][0], chunk[-1][0]
        window_days = min(max_window_days, calendar_days(first, last))
        checked_from = last - timedelta(days=window_days - 1)
        rows = sum(rows for day, rows in chunk if day >= checked_from)
        windows.append(Window(first, last, len(chunk), rows, window_days))
    return windows


# --------------------------------------------------------------------------- the local stack
def reset_state(stack: LocalStack, keep: str | None = None) -> None:
    """Stop what runs and remove the local state, all of it, or all but the top folder ``keep``."""
    if not stack.home.exists():
        return
    spared = f", keeping {stack.home / keep}" if keep else ""
    print(
        f"resetting the demo state in {stack.home} (Airflow, MLflow, DVC, logs){spared} for a clean run...", flush=True
    )
    stack.stop()
    if keep is None:
        shutil.rmtree(stack.home)
        return
    for entry in stack.home.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def set_up(stack: LocalStack) -> None:
    print("setting up the local profile (Airflow DB, settings, MLflow, DVC)...", flush=True)
    stack.setup()


def start_airflow(stack: LocalStack):
    """Start Airflow, wait for both DAGs and unpause them; the REST client."""
    print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {stack.api_url}...", flush=True)
    stack.start()
    client = stack.api()
    for dag_id in (DAG_ID, DRIFT_DAG_ID, ROLLOUT_DAG_ID):
        client.wait_for_dag(dag_id)
    # The DAGs run: ml_training when triggered, drift_monitor nightly (and its backfill and
    # manual runs: the scheduler starts no run, backfill or not, of a paused DAG), ml_rollout
    # hourly and when triggered (with no rollout in progress its run is skipped)
    for dag_id in (DAG_ID, DRIFT_DAG_ID, ROLLOUT_DAG_ID):
        client.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    return client


def land_history(stack: LocalStack, first_day: date, days: int, rows_per_day: int) -> None:
    from include.data.spec import load_spec
    from include.simulation.generate import land_days

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    land_days(spec, first_day, days, rows_per_day)
    print(
        f"demo data: landed {days} days x {rows_per_day} rows ({first_day}..{first_day + timedelta(days=days - 1)}) "
        f"in {spec.location}"
    )


# --------------------------------------------------------------------------- following runs
def follow_run(client, run_id: str, timeout: float, dag_id: str = DAG_ID, verbose: bool = True) -> dict:
    """Poll the run, printing each task's state when it changes (``verbose``), until it finishes."""
    seen: dict[str, str] = {}
    started = time.monotonic()

    def finished() -> dict | None:
        run = client.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        for ti in sorted(client.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or "~"):
            state = ti.get("state") or "none"
            if verbose and seen.get(ti["task_id"], "none") != state:
                seen[ti["task_id"]] = state
                print(f"  [{time.monotonic() - started:6.0f}s] {ti['task_id']:<10} {state}", flush=True)
        return run if run["state"] in FINISHED else None

    return wait_until(finished, timeout, interval=3, what=f"{dag_id} run {run_id} still running")


def train(client, conf: dict, timeout: float) -> dict:
    """Trigger ``ml_training`` with ``conf`` and follow it to its end."""
    run = client.trigger(DAG_ID, conf)
    print(f"triggered {DAG_ID} run {run['dag_run_id']} through the REST API; following it:", flush=True)
    return follow_run(client, run["dag_run_id"], timeout)


def retraining_runs(client) -> list[dict]:
    """The ``ml_training`` runs drift_monitor created (``drift__<day>``), oldest first."""
    runs = client.call("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_id_pattern": "drift__%", "limit": 100}).get(
        "dag_runs", []
    )
    return sorted((r for r in runs if r["dag_run_id"].startswith("drift__")), key=lambda r: r["dag_run_id"])


def wait_until_idle(client, dag_id: str, timeout: float) -> None:
    """Wait for the queued and running runs of ``dag_id`` (e.g. the scheduled one unpausing created)."""

    def idle() -> bool:
        active = client.call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"state": ["queued", "running"], "limit": 100}
        ).get("dag_runs", [])
        return not active

    wait_until(idle, timeout, interval=3, what=f"{dag_id} still has active runs")


def xcom(client, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID):
    response = client.request(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
        params={"deserialize": True},
    )
    return response.json().get("value") if response.status_code == 200 else None


def print_summary(stack: LocalStack, client, run: dict) -> bool:
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
    champion = champion_version(stack)
    print("-" * 72)
    print(f"model version : {version or 'none registered'}")
    print(f"champion      : {stack.settings.model_name} v{champion}" if champion else "champion      : none")
    if deployed and deployed.get("mode") in ("shadow", "canary"):
        share = f" answering {deployed['canary_share']:.0%} of the customers" if deployed["mode"] == "canary" else ""
        print(
            f"rollout       : v{deployed['version']} as a {deployed['mode']}{share}, beside champion "
            f"v{deployed['champion_version']} at {deployed['url']}/invocations; ml_rollout decides"
        )
    elif deployed:
        print(
            f"serving       : {deployed['url']}/invocations (model v{deployed['version']}, "
            f"previous champion: {deployed['previous_champion'] or 'none'})"
        )
    print(
        f"Airflow UI    : {stack.api_url}/dags/{DAG_ID}/runs/{run_id}  (user admin, password {stack.admin_password()})"
    )
    print(
        f"MLflow        : {stack.settings.tracking_uri}  "
        f"(browse: mlflow ui --backend-store-uri {stack.settings.tracking_uri} --host 127.0.0.1)"
    )
    print(f"task logs     : {stack.airflow_home / 'logs'}")
    print("stop it all   : make stop")
    print("=" * 72)
    return run["state"] == "success"


def champion_version(stack: LocalStack) -> str | None:
    from include import registry, tracking

    tracking.configure(stack.settings)
    return registry.alias_version(stack.settings.model_name, registry.CHAMPION)


def window_outcome(client, run: dict) -> dict:
    metrics = xcom(client, run["dag_run_id"], "check_drift", dag_id=DRIFT_DAG_ID) or {}
    decision = xcom(client, run["dag_run_id"], "trigger_retraining", "decision", dag_id=DRIFT_DAG_ID) or {}
    outcome, reason = decision.get("outcome", "skipped"), decision.get("reason", "see the check_drift log")
    if run["state"] == "failed":
        outcome, reason = "failed", "see the check_drift log"
    return {
        "window": run["data_interval_start"][:10],
        "state": run["state"],
        "rows": metrics.get("rows"),
        "drift_share": metrics.get("drift_share"),
        # CBPE's estimate from the probabilities alone, and the realised score once labels are in
        "estimated": metrics.get("estimated_roc_auc"),
        "realised": metrics.get("score") if metrics.get("metric") == "roc_auc" else None,
        "outcome": outcome,
        "reason": reason,
    }


def _auc(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def describe_window(client, run: dict) -> str:
    window = window_outcome(client, run)
    share = "   n/a" if window["drift_share"] is None else f"{window['drift_share']:6.2f}"
    return f"{window['window']}  rows {window['rows'] or 0:>5}  drift share {share}  {window['outcome']:<8} {window['reason']}"


# --------------------------------------------------------------------------- the generated churn data
def simulate_traffic(stack: LocalStack, first_day: date, days: int, drift_day: date, rows_per_day: int):
    from include.data.spec import load_spec
    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    print(
        f"\nsending {days} days of traffic ({first_day}..{first_day + timedelta(days=days - 1)}) to "
        f"{stack.settings.serving_url}, covariate drift from {drift_day}...",
        flush=True,
    )
    summaries = simulate(
        stack.settings,
        spec,
        stack.settings.serving_url,
        first_day,
        days,
        rows_per_day,
        drift=DriftConfig(kind="covariate", start=drift_day, strength=1.0),
    )
    for day in summaries:
        print(
            f"  {day.day}  {day.rows} rows in {day.requests} requests  {'drifted' if day.drifted else 'normal '}  "
            f"mean p(churn) {day.mean_probability:.3f}"
        )
    return summaries


def backfill_drift_monitor(client, first_day: date, last_day: date, timeout: float) -> list[dict]:
    """Backfill drift_monitor over [first_day, last_day] one window at a time; the runs, in date order."""
    backfill = client.create_backfill(
        DRIFT_DAG_ID,
        utc_midnight(first_day),
        utc_midnight(last_day),
        max_active_runs=1,
        reprocess_behavior="completed",
        # backfills only report drift unless asked: here the story is to retrain from history
        dag_run_conf={"allow_backfill_retrain": True},
    )
    print(
        f"\nbackfilling {DRIFT_DAG_ID} {first_day}..{last_day} through the REST API (backfill {backfill['id']}), "
        f"one window at a time:",
        flush=True,
    )
    reported: set[str] = set()
    runs: list[dict] = []

    def finished() -> bool:
        nonlocal runs
        runs = client.call(
            "GET",
            f"/dags/{DRIFT_DAG_ID}/dagRuns",
            params={"run_type": "backfill", "order_by": "logical_date", "limit": 100},
        )["dag_runs"]
        runs = [r for r in runs if r.get("backfill_id") in (None, backfill["id"])]
        for run in runs:
            if run["state"] in FINISHED and run["dag_run_id"] not in reported:
                reported.add(run["dag_run_id"])
                print("  " + describe_window(client, run), flush=True)
        return bool(client.call("GET", f"/backfills/{backfill['id']}").get("completed_at")) and all(
            r["state"] in FINISHED for r in runs
        )

    wait_until(finished, timeout, interval=3, what=f"backfill {backfill['id']} not finished")
    return runs


def roll_out(stack: LocalStack, client, drift_day: date, timeout: float) -> list[tuple[str, dict | None]]:
    """Follow the retraining's canary to its end, then a worse candidate's; the two last decisions."""
    from include.data.spec import load_spec
    from include.simulation.generate import DriftConfig

    spec = load_spec(stack.settings.dataset_spec, stack.env())
    # the customers keep drifting as they did: the world the retrained model was trained for
    drift = DriftConfig(kind="covariate", start=drift_day, strength=1.0)
    print(f"\nthe retrained version goes out as a canary; live rounds of {LIVE_ROWS} customers, then {ROLLOUT_DAG_ID}:")
    better = follow_rollout(stack, client, spec, drift, first_seed=100, timeout=timeout)
    champion = champion_version(stack)
    print(f"\na worse candidate: trained on shuffled labels, registered without a gate, canary against v{champion}...")
    started = start_worse_candidate(stack, spec, champion)
    print(f"  version {started['version']} serves {started['canary_share']:.0%} of the customers; live rounds:")
    worse = follow_rollout(stack, client, spec, drift, first_seed=200, timeout=timeout)
    return [("better", better), ("worse", worse)]


def utc_midnight(day: date) -> str:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC).isoformat()


def run_generated(args, started: float) -> int:
    """``make demo``: the story on 50 days of generated churn history and 10 days of simulated traffic."""
    today = date.today()
    traffic_start = today - timedelta(days=args.traffic_days)
    history_start = traffic_start - timedelta(days=args.history_days)
    drift_day = traffic_start + timedelta(days=args.drift_from_day - 1)

    stack = LocalStack()
    reset_state(stack)
    # the churn spec with a canary rollout: the retraining drift triggers goes out as one
    demo_spec = write_demo_spec(stack.settings.dataset_spec, stack.home)
    stack = LocalStack(extra_env={"MLOPS_DATASET_SPEC": str(demo_spec)})
    print(f"dataset spec: {demo_spec} ({stack.settings.dataset_spec.name} with rollout: {DEMO_ROLLOUT})")
    set_up(stack)
    land_history(stack, history_start, args.history_days, args.rows_per_day)
    client = start_airflow(stack)

    # 1. the first champion, from the history
    run = train(
        client,
        {"reason": "make demo: first model", "training_window_end": (traffic_start - timedelta(days=1)).isoformat()},
        args.timeout,
    )
    if not print_summary(stack, client, run):
        return 1

    # 2. traffic, drifting from day K
    simulate_traffic(stack, traffic_start, args.traffic_days, drift_day, args.traffic_rows_per_day)

    # 3. the nightly drift check over those days, as a backfill
    runs = backfill_drift_monitor(client, traffic_start, today - timedelta(days=1), args.timeout)
    windows = [window_outcome(client, r) for r in runs]
    fired = [w for w in windows if w["outcome"] == "retrain"]
    retraining = retraining_runs(client)
    print(
        f"\nretraining fired from {len(fired)} window(s): {', '.join(w['window'] for w in fired) or 'none'}; "
        f"{len(retraining)} {DAG_ID} run(s) created by drift_monitor"
    )
    ok = len(fired) == 1 and len(retraining) == 1
    rollouts: list[tuple[str, dict | None]] = []
    if retraining:
        print(f"following {DAG_ID} run {retraining[0]['dag_run_id']}:", flush=True)
        retrain_run = follow_run(client, retraining[0]["dag_run_id"], args.timeout)
        ok = print_summary(stack, client, retrain_run) and ok
        rollouts = roll_out(stack, client, drift_day, args.timeout)

    print("\ndrift per simulated day (drift_monitor backfill; ROC AUC estimated by CBPE before labels, and realised):")
    print(f"  {'window':<10}  {'rows':>5}  {'drift share':>11}  {'est. AUC':>8}  {'real AUC':>8}  outcome")
    for window in windows:
        share = "n/a" if window["drift_share"] is None else f"{window['drift_share']:.2f}"
        mark = "  <- drift from here" if window["window"] == drift_day.isoformat() else ""
        print(
            f"  {window['window']:<10}  {window['rows'] or 0:>5}  {share:>11}  {_auc(window['estimated']):>8}  "
            f"{_auc(window['realised']):>8}  {window['outcome']}{mark}"
        )
    print(f"reports: {stack.settings.reports}/drift/<day>/report.html; MLflow experiment drift_monitoring")
    ok = print_rollouts(stack, rollouts) and ok
    print(f"make demo took {time.monotonic() - started:.0f}s; Airflow keeps running until `make stop`.")
    return 0 if ok else 1


# --------------------------------------------------------------------------- your own landed data
class DatasetNotReady(Exception):
    """The user's dataset cannot run through the demo yet; the message says what to do."""


def dataset_env(spec_path: Path, name: str) -> dict[str, str]:
    """What every Airflow process (and the stack's settings) needs to work on the user's dataset."""
    return {"MLOPS_DATASET_SPEC": str(spec_path), "MLOPS_MODEL_NAME": name}


def load_dataset(spec_path: Path):
    from include.data.spec import SpecError, load_spec

    try:
        return load_spec(spec_path)
    except SpecError as exc:
        raise DatasetNotReady(str(exc)) from None


def landed_days(stack: LocalStack, spec) -> list[date]:
    """The spec's landed days; they must be there, and out of the way of the reset."""
    from include.data.partitions import DataError, partition_dates

    kept = stack.home / KEPT_FOLDER
    for key, path in (("location", Path(spec.location)), ("expectation_suite", spec.expectation_suite)):
        resolved = path.resolve()
        if resolved.is_relative_to(stack.home) and not resolved.is_relative_to(kept):
            raise DatasetNotReady(
                f"the spec's {key} {path} lies in {stack.home}, which make demo resets "
                f"(all but {kept}/): move it under {kept}/ or out of {stack.home}"
            )
    try:
        days = partition_dates(spec)
    except DataError as exc:
        raise DatasetNotReady(str(exc)) from None
    if not days:
        raise DatasetNotReady(
            f"no landed partition of {spec.name} in {spec.location}. Land your export first:\n"
            f"  .venv/bin/python -m include.data.ingest --spec {spec.source} [--as-of YYYY-MM-DD] EXPORT.csv ...\n"
            f"then run `make demo DATASET={spec.source}` again"
        )
    return days


def ensure_suite(spec, days: list[date]) -> None:
    """Profile the landed data into the spec's expectation suite when it does not exist yet."""
    from include.data.partitions import DataError, read_window
    from include.validation.suite import ProfileError, build_suite_from_data

    if spec.expectation_suite.exists():
        print(f"expectation suite: {spec.expectation_suite}")
        return
    try:
        frame = read_window(spec, days[0], days[-1] + timedelta(days=1))
        suite = build_suite_from_data(spec, frame, days=days)
    except (DataError, ProfileError) as exc:
        raise DatasetNotReady(f"cannot profile a suite for {spec.name}: {exc}") from None
    spec.expectation_suite.parent.mkdir(parents=True, exist_ok=True)
    spec.expectation_suite.write_text(json.dumps(suite, indent=2) + "\n")
    print(
        f"expectation suite {spec.expectation_suite} did not exist: profiled it from the {len(days)} landed "
        f"day(s) ({len(frame)} rows), as `python -m include.validation.suite --spec {spec.source} --profile` "
        f"does; review it and tighten it by hand"
    )


def replay_later_days(stack: LocalStack, spec, later: list[date]):
    from include.monitoring.replay import replay

    url = stack.settings.serving_url
    print(
        f"\nreplaying the {len(later)} later day(s) ({span(later)}) through the champion at {url}, "
        f"with their own event times, and storing their labels...",
        flush=True,
    )
    replayed = replay(stack.settings, spec, url, later[0], later[-1] + timedelta(days=1))
    print(
        f"  {sum(d.rows for d in replayed)} rows in {sum(d.requests for d in replayed)} requests, "
        f"labels in {stack.settings.inference_log}"
    )
    return replayed


def check_windows(stack: LocalStack, client, windows: list[Window], timeout: float) -> tuple[list[dict], list[dict]]:
    """One manual drift_monitor run per window, one at a time (SQLite); a retraining a window
    fires is followed to its end before the next window. The windows' results and the retrainings."""
    # unpausing drift_monitor started its run for the latest closed day: let it finish first
    wait_until_idle(client, DRIFT_DAG_ID, timeout)
    print(
        f"\nchecking the replayed days with {DRIFT_DAG_ID} in {len(windows)} window(s), one manual run at a "
        f"time through the REST API:",
        flush=True,
    )
    results, retrainings = [], []
    for window in windows:
        run_id = f"make_demo__{window.last.isoformat()}"
        client.call(
            "POST",
            f"/dags/{DRIFT_DAG_ID}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": utc_midnight(window.logical_date), "conf": window.conf},
        )
        run = follow_run(client, run_id, timeout, dag_id=DRIFT_DAG_ID, verbose=False)
        result = {
            **window_outcome(client, run),
            "window": window.label,
            "days": window.days,
            "report_day": window.last.isoformat(),
        }
        states = {ti["task_id"]: ti.get("state") for ti in client.task_instances(DRIFT_DAG_ID, run_id)}
        if states.get("check_drift") == "skipped":
            result["reason"] = f"insufficient data (fewer than min_rows {window.min_rows} rows served)"
        if result["rows"] is None:
            result["rows"] = window.rows
        if window.truncated:
            result["reason"] += f" [checked its last {window.window_days} days only]"
        results.append(result)
        share = "   n/a" if result["drift_share"] is None else f"{result['drift_share']:6.2f}"
        print(
            f"  {window.label:<22}  rows {result['rows']:>5}  drift share {share}  {result['outcome']:<8} "
            f"{result['reason']}",
            flush=True,
        )
        if result["outcome"] == "retrain":
            followed = {r["dag_run_id"] for r in retrainings}
            for pending in (r for r in retraining_runs(client) if r["dag_run_id"] not in followed):
                print(
                    f"following {DAG_ID} run {pending['dag_run_id']} (the retraining window {window.label} triggered):",
                    flush=True,
                )
                finished = follow_run(client, pending["dag_run_id"], timeout)
                print_summary(stack, client, finished)
                retrainings.append(finished)
    return results, retrainings


def print_window_table(results: list[dict]) -> None:
    print("\ndrift per replayed window (drift_monitor, one manual run each):")
    print(
        f"  {'window':<22}  {'days':>4}  {'rows':>5}  {'drift share':>11}  {'est. AUC':>8}  {'real AUC':>8}  "
        f"{'outcome':<8}  reason"
    )
    for result in results:
        share = "n/a" if result["drift_share"] is None else f"{result['drift_share']:.2f}"
        print(
            f"  {result['window']:<22}  {result['days']:>4}  {result['rows'] or 0:>5}  {share:>11}  "
            f"{_auc(result.get('estimated')):>8}  {_auc(result.get('realised')):>8}  "
            f"{result['outcome']:<8}  {result['reason']}"
        )


def describe_training(client, run: dict) -> str:
    decision = xcom(client, run["dag_run_id"], "gate", "decision")
    deployed = xcom(client, run["dag_run_id"], "deploy")
    gate = "" if not decision else f", gate {'PASSED' if decision['passed'] else 'REJECTED'}"
    served = f", deployed v{deployed['version']}" if deployed else ", nothing deployed"
    failed = [ti["task_id"] for ti in client.task_instances(DAG_ID, run["dag_run_id"]) if ti.get("state") == "failed"]
    where = f" at {', '.join(failed)} (see its log)" if failed else ""
    return f"{run['dag_run_id']} {run['state'].upper()}{where}{gate}{served}"


def print_dataset_summary(
    stack: LocalStack, client, spec, days, history, first_run, replayed, results, retrainings, started: float
) -> None:
    champion = champion_version(stack)
    print("\n" + "=" * 72)
    print(f"make demo on {spec.name}: {spec.task}, target {spec.target}, gate metric {spec.gate.metric}")
    print("-" * 72)
    print(f"landed        : {len(days)} day(s), {span(days)}, in {spec.location}")
    print(f"history       : {len(history)} day(s), {span(history)} -> {describe_training(client, first_run)}")
    if replayed:
        print(
            f"replayed      : {len(replayed)} day(s), {span([replayed[0].day, replayed[-1].day])}: "
            f"{sum(d.rows for d in replayed)} rows in {sum(d.requests for d in replayed)} requests, labels stored"
        )
        fired = [r["window"] for r in results if r["outcome"] == "retrain"]
        counts = {
            outcome: sum(r["outcome"] == outcome for r in results)
            for outcome in ("retrain", "no_drift", "skipped", "failed")
        }
        print(
            f"drift checks  : {len(results)} window(s): "
            + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
        )
        print(f"retraining    : {'fired from ' + ', '.join(fired) if fired else 'none fired'}")
        for run in retrainings:
            print(f"                {describe_training(client, run)}")
    else:
        print("replayed      : nothing (a single landed day: no later day to replay)")
    print(
        f"champion      : {spec.name} v{champion}, serving {stack.settings.serving_url}/invocations"
        if champion
        else "champion      : none"
    )
    checked = ", ".join(r["report_day"] for r in results if r["drift_share"] is not None)
    if checked:
        print(
            f"reports       : {stack.settings.reports}/drift/<day>/report.html and metrics.json, <day> a window's "
            f"last day ({checked}); MLflow experiment drift_monitoring"
        )
    print(
        f"MLflow        : {stack.settings.tracking_uri}  "
        f"(browse: mlflow ui --backend-store-uri {stack.settings.tracking_uri} --host 127.0.0.1)"
    )
    print(
        f"Airflow UI    : {stack.api_url}/dags/{DRIFT_DAG_ID}/runs and {stack.api_url}/dags/{DAG_ID}/runs  "
        f"(user admin, password {stack.admin_password()})"
    )
    print(f"task logs     : {stack.airflow_home / 'logs'}")
    print(f"Models page   : {models_page_url(stack)}")
    print("=" * 72)
    print(f"make demo took {time.monotonic() - started:.0f}s; Airflow keeps running until `make stop`.")


def run_dataset(args, started: float) -> int:
    """``make demo DATASET=spec``: the story on the user's landed days."""
    spec_path = Path(args.dataset).resolve()
    try:
        spec = load_dataset(spec_path)
        stack = LocalStack(extra_env=dataset_env(spec_path, spec.name))
        days = landed_days(stack, spec)
        ensure_suite(spec, days)
    except DatasetNotReady as exc:
        print(f"make demo DATASET={args.dataset}: {exc}", file=sys.stderr)
        return 2
    history, later = split_days(days)
    plan = (
        f"the first {len(history)} ({span(history)}) train the first champion, the {len(later)} later "
        f"one(s) ({span(later)}) are replayed"
        if later
        else "a snapshot: it trains the first champion"
    )
    print(f"{spec.name}: {len(days)} landed day(s) {span(days)} in {spec.location}; {plan}", flush=True)

    reset_state(stack, keep=KEPT_FOLDER)
    set_up(stack)
    client = start_airflow(stack)

    # 1. the first champion, from the history
    first_run = train(client, training_conf(spec.name, history), args.timeout)
    ok = print_summary(stack, client, first_run)
    if not ok or not xcom(client, first_run["dag_run_id"], "deploy"):
        decision = xcom(client, first_run["dag_run_id"], "gate", "decision") or {}
        failed = [check["name"] for check in decision.get("checks", []) if not check["passed"]]
        hint = " (a busy machine answers slowly: run it again)" if failed == ["latency"] else ""
        print(
            f"\nno champion was deployed, so nothing serves the later days: "
            f"{'the gate failed ' + ', '.join(failed) + hint if failed else 'see the task logs above'}"
        )
        return 1
    if not later:
        print(
            f"\n{spec.name} is landed as a single day ({days[0]}, a snapshot): the champion is served, but there "
            f"is no later day to replay through it or to check for drift. Land a later export as a day of its "
            f"own, then run the demo again:\n"
            f"  .venv/bin/python -m include.data.ingest --spec {spec_path} --as-of YYYY-MM-DD LATER_EXPORT.csv\n"
            f"  make demo DATASET={args.dataset}"
        )
        print_dataset_summary(stack, client, spec, days, history, first_run, [], [], [], started)
        return 0

    # 2. the later days, through the served champion
    replayed = replay_later_days(stack, spec, later)

    # 3. drift_monitor over the replayed days, and the retraining it fires
    windows = plan_windows([(day.day, day.rows) for day in replayed])
    results, retrainings = check_windows(stack, client, windows, args.timeout)
    print_window_table(results)
    print_dataset_summary(stack, client, spec, days, history, first_run, replayed, results, retrainings, started)
    ok = all(r["state"] == "success" for r in results) and all(r["state"] == "success" for r in retrainings)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset",
        metavar="SPEC",
        help="your dataset spec, its days landed with python -m include.data.ingest "
        "(default: the generated churn data)",
    )
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
    return run_dataset(args, started) if args.dataset else run_generated(args, started)


if __name__ == "__main__":
    sys.exit(main())
