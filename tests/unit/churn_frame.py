"""A small synthetic churn frame for the training and evaluation tests.

Built here rather than with include/simulation/generate.py so these tests depend only
on the dataset spec. The label follows a known logistic rule, so a model that
learns anything scores well above 0.5 ROC AUC, and a model trained on shuffled
labels does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from include.data.spec import DatasetSpec

WINDOW_START = pd.Timestamp("2024-03-01T00:00:00Z")


def make_frame(spec: DatasetSpec, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows with every column of the customer_churn spec and a learnable 0/1 label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 121, rows)
    monthly_charges = rng.uniform(5, 250, rows).round(2)
    support_calls = np.minimum(rng.poisson(2.0, rows), 60)
    usage_hours = rng.uniform(0, 720, rows).round(1)
    days_since_login = np.minimum(rng.exponential(30.0, rows), 365).round(1)
    devices = rng.integers(1, 7, rows)
    categories = {feature.name: list(feature.categories) for feature in spec.features if not feature.is_numeric}
    plan = rng.choice(categories["plan"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(categories["region"], rows)
    payment = rng.choice(categories["payment_method"], rows)
    contract = rng.choice(categories["contract"], rows, p=[0.5, 0.3, 0.2])

    logit = (
        -0.4
        - 0.035 * (tenure - 40)
        + 0.55 * (support_calls - 2)
        + 0.025 * (days_since_login - 30)
        - 0.002 * (usage_hours - 360)
        + 0.004 * (monthly_charges - 120)
        + np.select([contract == "monthly", contract == "two_year"], [1.0, -1.2], 0.0)
        + np.where(plan == "premium", -0.6, 0.0)
        + np.where(payment == "invoice", 0.4, 0.0)
    )
    churned = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    seconds = np.sort(rng.integers(0, 30 * 24 * 3600, rows))
    frame = pd.DataFrame(
        {
            spec.id_column: [f"cust-{seed}-{index:06d}" for index in range(rows)],
            spec.timestamp_column: WINDOW_START + pd.to_timedelta(seconds, unit="s"),
            "tenure_months": tenure,
            "monthly_charges": monthly_charges,
            "support_calls_30d": support_calls,
            "usage_hours_30d": usage_hours,
            "days_since_last_login": days_since_login,
            "num_devices": devices,
            "plan": plan.astype(object),
            "region": region.astype(object),
            "payment_method": payment.astype(object),
            "contract": contract.astype(object),
            spec.target: churned,
        }
    )
    return frame[spec.columns]
