"""Rollout power: how many labelled rows, and requests, a rollout needs before ``ml_rollout`` decides.

A simulated binary model stream (binormal scores: a row's score is ``d x label + noise``, so ROC AUC =
Phi(d / sqrt 2)) with a champion at AUC 0.80 and a candidate better or worse by a given AUC difference; the
two models' noises are correlated (rho 0.7), as two models of the same data are. For each design (shadow,
and canaries at 5 % and 25 %) and effect, labelled rows arrive and the project's own decision
(:func:`include.rollout.decision.decide`, the demo spec's default rules: 200 rows per version, margin 0.01,
95 % intervals) is asked at growing checkpoints until it promotes or rolls back. Reported: the candidate's
labelled rows at the decision, and the requests the service must answer for the candidate to collect them
(a canary at share s sends the candidate a share s of the requests; shadow scores every request).

    python -m benchmarks.rollout_power      # BENCH_QUICK=1: fewer repetitions and effects
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import quick, save

CHAMPION_AUC = 0.80
NOISE_CORRELATION = 0.7
DESIGNS = (("shadow", None), ("canary", 0.05), ("canary", 0.25))
START = datetime(2026, 3, 1, tzinfo=UTC)
# candidate labelled rows at which the decision is asked, up to the cap
CHECKPOINTS = tuple(int(200 * 1.5**k) for k in range(12))


def _separation(auc: float) -> float:
    return math.sqrt(2) * NormalDist().inv_cdf(auc)


def _stream(n: int, effect: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    labels = rng.integers(0, 2, n)
    shared, own_a, own_b = rng.normal(size=(3, n))
    rho = NOISE_CORRELATION
    noise_a = shared * math.sqrt(rho) + own_a * math.sqrt(1 - rho)
    noise_b = shared * math.sqrt(rho) + own_b * math.sqrt(1 - rho)
    d_a, d_b = _separation(CHAMPION_AUC), _separation(CHAMPION_AUC + effect)
    champion = 1 / (1 + np.exp(-(d_a * labels + noise_a - d_a / 2)))
    candidate = 1 / (1 + np.exp(-(d_b * labels + noise_b - d_b / 2)))
    return {"labels": labels, "champion": champion, "candidate": candidate}


def _frame(stream: dict[str, np.ndarray], mode: str, share: float | None, rows: int, rng) -> pd.DataFrame:
    labels, champion, candidate = (stream[key][:rows] for key in ("labels", "champion", "candidate"))
    times = START + pd.to_timedelta(np.arange(rows), unit="s")
    if mode == "shadow":
        return pd.DataFrame(
            {
                "timestamp": times,
                "model_version": "1",
                "probability": champion,
                "other_version": "2",
                "other_probability": candidate,
                "label": labels,
            }
        )
    answered = rng.random(rows) < share
    return pd.DataFrame(
        {
            "timestamp": times,
            "model_version": np.where(answered, "2", "1"),
            "probability": np.where(answered, candidate, champion),
            "label": labels,
        }
    )


def rows_to_decide(spec, mode: str, share: float | None, effect: float, seed: int) -> dict[str, Any]:
    """Ask the decision at growing checkpoints of candidate labelled rows; returns the first decision taken
    (``action``, ``candidate_rows``, ``requests``), or ``action`` ``undecided`` at the last checkpoint."""
    from include.data.rollout_spec import RolloutSpec
    from include.rollout.decision import RolloutState, decide

    rules = RolloutSpec(mode=mode, canary_steps=(share,) if share else (0.05, 0.25, 1.0))
    fraction = 1.0 if share is None else share
    rng = np.random.default_rng(seed)
    total = int(CHECKPOINTS[-1] / fraction) + 1
    stream = _stream(total, effect, rng)
    state = RolloutState("2", "1", mode, START, share or 0.0, rules.canary_steps, START)
    for candidate_rows in CHECKPOINTS:
        requests = int(candidate_rows / fraction)
        frame = _frame(stream, mode, share, requests, np.random.default_rng(seed + 1))
        decision = decide(frame, spec, rules, state, START + timedelta(hours=1))
        if decision.action in ("promote", "rollback"):
            labelled = decision.numbers.get("labelled_rows", {}).get("candidate", candidate_rows)
            return {"action": decision.action, "candidate_rows": labelled, "requests": requests}
    return {"action": "undecided", "candidate_rows": CHECKPOINTS[-1], "requests": int(CHECKPOINTS[-1] / fraction)}


def main() -> None:
    from include.data.spec import DatasetSpec, Feature

    spec = DatasetSpec(
        name="simulated",
        location="",
        id_column="id",
        timestamp_column="time",
        target="label",
        features=(Feature("x", "numeric"),),
        slice_feature=None,
        expectation_suite=None,
    )
    effects = (0.05, -0.05) if quick() else (0.02, 0.05, -0.02, -0.05)
    repetitions = 2 if quick() else 15
    results = []
    started = time.perf_counter()
    for mode, share in DESIGNS:
        for effect in effects:
            runs = [rows_to_decide(spec, mode, share, effect, seed) for seed in range(repetitions)]
            expected = "promote" if effect > 0 else "rollback"
            results.append(
                {
                    "design": mode if share is None else f"canary {share:.0%}",
                    "effect": effect,
                    "expected": expected,
                    "runs": repetitions,
                    "correct": sum(run["action"] == expected for run in runs),
                    "undecided": sum(run["action"] == "undecided" for run in runs),
                    "median_candidate_rows": float(np.median([run["candidate_rows"] for run in runs])),
                    "median_requests": float(np.median([run["requests"] for run in runs])),
                }
            )
            print(results[-1], flush=True)
    save(
        "rollout_power",
        {
            "champion_auc": CHAMPION_AUC,
            "noise_correlation": NOISE_CORRELATION,
            "checkpoints": list(CHECKPOINTS),
            "results": results,
            "seconds": time.perf_counter() - started,
        },
    )


def report_section(result: dict | None) -> list[str]:
    """The RESULTS.md section: one row per design and effect."""
    if result is None:
        return ["*Not measured: the `rollout_power` section did not complete (see the output of `make bench`).*", ""]
    rows = [
        "| design | AUC difference | expected | correct | median candidate labelled rows | median requests |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["results"]:
        undecided = f" ({row['undecided']} undecided)" if row["undecided"] else ""
        rows.append(
            f"| {row['design']} | {row['effect']:+.2f} | {row['expected']} | {row['correct']}/{row['runs']}{undecided} "
            f"| {row['median_candidate_rows']:,.0f} | {row['median_requests']:,.0f} |"
        )
    return [
        "## Rollout power",
        "",
        f"Labelled rows the rollout decision needs (`include.rollout.decision.decide`, default rules: 200 rows per "
        f"version, margin 0.01, 95 % bootstrap intervals) for a simulated champion at ROC AUC "
        f"{result['champion_auc']:.2f} against a candidate better or worse by the AUC difference shown (scores "
        f"correlated {result['noise_correlation']}), asked at checkpoints of "
        f"{', '.join(f'{value:,}' for value in result['checkpoints'][:4])}, ... candidate rows. Requests: what the "
        "service answers while the candidate collects those labels (a 5 % canary needs 20x its labelled rows).",
        "",
        *rows,
        "",
    ]


if __name__ == "__main__":
    main()
