"""``make demo``'s rollouts: the drift-triggered retraining goes out as a canary, and a worse candidate too.

The demo's spec is the churn spec with a ``rollout:`` section (:func:`write_demo_spec`), so the
retraining that drift triggers is deployed the way the spec says: a canary at 5 %, then 25 %,
then 100 % of the customers, the champion answering the others. :func:`follow_rollout` plays
the live hours: each round sends a batch of new customers (stamped now, routed by their
customer id, then labelled) and triggers ``ml_rollout`` through the REST API, which steps,
promotes or rolls back, until the rollout ends.

The second scenario, :func:`start_worse_candidate`, trains a model on the same snapshot with
its labels shuffled (it learns nothing), registers it without a gate (it could not pass one)
and starts it as a canary against the new champion, for ``ml_rollout`` to roll back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scripts.local_stack import LocalStack

ROLLOUT_DAG_ID = "ml_rollout"
# The demo spec's rollout section: a canary in three steps. The retraining learns the same
# concept from drifted features, so it is about as good as the champion (within ~0.01 ROC AUC on
# the live customers). Showing "not worse by more than 0.01" (the default margin) at a 5 % share
# takes far more labelled customers than a demo sends, so the demo accepts a loss of up to 0.03
# (benchmarks/rollout_power.py measures the labelled rows a rollout needs).
DEMO_ROLLOUT = {"mode": "canary", "canary_steps": [0.05, 0.25, 1.0], "margin": 0.03}
# new customers per live round: at a 5 % share the candidate answers ~1,000 of them
LIVE_ROWS = 20_000
MAX_ROUNDS = 8
SHUFFLED_EPOCHS = 5


def write_demo_spec(source: Path, home: Path) -> Path:
    """The spec at ``source`` with :data:`DEMO_ROLLOUT` as its ``rollout:`` section, written under ``home``.

    Returns the written path (``<home>/demo/<file name>``). Raises ``OSError`` when it cannot be written
    and ``yaml.YAMLError`` for a spec that is not YAML.
    """
    import yaml

    spec = yaml.safe_load(source.read_text())
    spec["rollout"] = dict(DEMO_ROLLOUT)
    target = home / "demo" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# {source.name} with a canary rollout, written by make demo\n" + yaml.safe_dump(spec, sort_keys=False)
    )
    return target


def _share(value) -> str:
    return "n/a" if value is None else f"{float(value):.0%}"


def describe_decision(decision: dict) -> str:
    """One line for a decision of ``ml_rollout`` (its XCom): the share, the labelled rows, the action, why."""
    numbers = decision.get("numbers") or {}
    rows = numbers.get("labelled_rows") or {}
    share = f"share {_share(numbers.get('canary_share'))}  " if decision.get("mode") == "canary" else ""
    return (
        f"{share}labelled rows: candidate {rows.get('candidate', 0)}, champion {rows.get('champion', 0)}  "
        f"-> {decision.get('action', '?').upper()}: {decision.get('reason', '')}"
    )


def follow_rollout(stack: LocalStack, client, spec, drift, first_seed: int, timeout: float) -> dict | None:
    """Live rounds until the rollout in progress ends; returns the last decision (None: ``ml_rollout`` skipped).

    Each round sends :data:`LIVE_ROWS` labelled customers (seed ``first_seed + round``, ``drift`` applied)
    and triggers ``ml_rollout``; at most :data:`MAX_ROUNDS` rounds.
    """
    from include.simulation.live import send_live
    from scripts.demo import follow_run, xcom

    decision = None
    for round_number in range(1, MAX_ROUNDS + 1):
        batch = send_live(stack.settings, spec, stack.settings.serving_url, LIVE_ROWS, first_seed + round_number, drift)
        run = client.trigger(ROLLOUT_DAG_ID, {})
        finished = follow_run(client, run["dag_run_id"], timeout, dag_id=ROLLOUT_DAG_ID, verbose=False)
        decision = xcom(client, run["dag_run_id"], "decide_and_act", dag_id=ROLLOUT_DAG_ID)
        if decision is None:
            print(f"  round {round_number}: {ROLLOUT_DAG_ID} run {run['dag_run_id']} {finished['state']}, no decision")
            return None
        print(
            f"  round {round_number}: {batch.rows} customers sent, then {ROLLOUT_DAG_ID}: {describe_decision(decision)}"
        )
        if decision.get("state") != "running":
            return decision
    return decision


def start_worse_candidate(stack: LocalStack, spec, champion: str) -> dict:
    """Train on the champion's snapshot with shuffled labels, register it ungated, start it as a canary.

    Returns :func:`include.rollout.controller.start_rollout`'s dict (with ``version``).
    """
    import numpy as np

    from include import pipeline, registry, tracking
    from include.data.versioning import DatasetRef
    from include.rollout.controller import start_rollout
    from include.training import DEFAULT_LEARNING_RATES
    from include.training.train import TrainingConfig, train_and_log

    settings = stack.settings
    tracking.configure(settings)
    # the demo's own output stays the story: MLflow's info lines and download bars are not part of it
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    data_ref = pipeline.data_ref_of(settings, champion)
    frame = pipeline.load_snapshot(settings, data_ref)
    frame[spec.target] = np.random.default_rng(0).permutation(frame[spec.target].to_numpy())
    reason = "make demo: a worse candidate, trained on shuffled labels"
    config = TrainingConfig("torch_mlp", SHUFFLED_EPOCHS, DEFAULT_LEARNING_RATES["torch_mlp"], 256)
    result = train_and_log(frame, spec, config, settings, {"reason": reason, "training.labels": "shuffled"})
    tags = {
        # the snapshot it was trained from, its labels shuffled: the smoke test samples the same rows
        **DatasetRef.from_dict(data_ref).to_tags(),
        "training.run_id": result.run_id,
        "training.labels": "shuffled",
        "reason": reason,
        "gate.passed": "false",
        "gate.reason": "not gated: trained on shuffled labels to show a rollback (it could not pass a gate)",
    }
    version = registry.register_challenger(settings.model_name, result.model_uri, result.run_id, tags)
    return start_rollout(settings, spec, data_ref, version, "canary", airflow_run_id="make-demo")


def print_rollouts(stack: LocalStack, rollouts: list[tuple[str, dict | None]]) -> bool:
    """The two rollouts' outcomes, and where to see them; True when the better one was promoted and the
    worse one rolled back."""
    from scripts.local_stack import models_page_url

    print("\nrollouts (canary 5 % -> 25 % -> 100 %, margin 0.03 ROC AUC; decided by ml_rollout on labelled live rows):")
    expected = {"better": "promoted", "worse": "rolled_back"}
    ok = True
    for name, decision in rollouts:
        state = None if decision is None else decision.get("state")
        ok = ok and state == expected[name]
        version = "?" if decision is None else decision.get("candidate_version")
        champion = "?" if decision is None else decision.get("champion_version")
        print(f"  {name:<6} candidate v{version} against champion v{champion}: {state or 'no decision'}")
        if decision is not None:
            print(f"         {decision.get('reason', '')}")
    print(f"Models page   : {models_page_url(stack)}  (the champion timeline, each version's gate and rollout)")
    print(f"rollout runs  : {stack.api_url}/dags/{ROLLOUT_DAG_ID}/runs")
    return ok
