"""Seeded generator of the demo dataset: subscription customers and whether they churned.

Each generated day is one landing partition, ``<location>/date=YYYY-MM-DD/part-0.parquet``,
holding one row per customer snapshot taken that day. It stands in for the
export a product database would drop into the landing zone every night.

Generative process
==================
Every random draw comes from a stream seeded by ``(seed, day.toordinal())`` and
the feature's name, so a day is the same whichever other days are generated,
and a feature's draws do not depend on how many numbers another feature used.
Drift reuses the same underlying draws (common random numbers): concept drift
leaves every feature value untouched and changes only the label probability;
covariate drift moves the same customers rather than drawing new ones.

Customer profile (categoricals)
    ``plan``            basic 45 %, standard 35 %, premium 20 %.
    ``contract``        depends on the plan: basic customers mostly pay monthly
                        (65 % monthly, 25 % annual, 10 % two_year), premium ones
                        commit more (40 / 35 / 25 %); standard sits between.
    ``region``          north 28 %, south 24 %, east 26 %, west 22 %.
    ``payment_method``  card 42 %, bank_transfer 24 %, paypal 20 %, invoice 14 %.

Behaviour (numerics, clipped to the spec's min/max)
    ``tenure_months``   Gamma, longer for longer contracts (mean ~16 months on
                        monthly, ~31 on annual, ~45 on two_year), whole months.
    ``num_devices``     1 + Poisson(0.8 basic / 1.6 standard / 2.8 premium), whole.
    ``monthly_charges`` plan base price (25 / 55 / 95) + 6 per extra device
                        + Normal(0, 7) noise, rounded to cents.
    ``usage_hours_30d`` Gamma(shape 2.5) with mean 40 / 70 / 110 hours by plan
                        + 8 hours per device, one decimal.
    ``days_since_last_login``
                        Exponential with a mean that shrinks as usage grows
                        (3 + 300 / (usage + 10) days); 6 % of customers are
                        dormant and last logged in 30-365 days ago. Whole days.
    ``support_calls_30d``
                        Poisson; more calls on the basic plan, in the first six
                        months, and for customers with many devices. Whole.

``num_devices``, ``days_since_last_login``, ``support_calls_30d`` and
``tenure_months`` are whole numbers stored as float64 like the other numeric
features, so every numeric column has one dtype.

Label: ``churned`` = 1 when the customer cancels within 30 days
    ``P(churned) = sigmoid(logit)`` with ::

        logit = -2.85
              + 1.20 [monthly] - 0.90 [two_year]          contract commitment
              - 0.66 (log1p(tenure_months) - 2.2)         loyalty grows with tenure
              + 0.38 support_calls_30d                    frustration
              - 1.02 (log1p(usage_hours_30d) - 4)         engagement
              + 0.54 days_since_last_login / 30           disengagement
              + 0.03 (monthly_charges - plan base price)  over-paying for the plan
              + 0.36 [basic] - 0.30 [premium]
              + 0.42 [invoice] - 0.24 [card]
              + 0.24 support_calls_30d * [monthly]        interaction: unhappy and free to leave
              + 0.72 [usage < 20 h] * [charges > 80]      interaction: paying for what you don't use
              - 0.60 [tenure < 6] * [two_year]            interaction: fresh long contracts stick
              + Normal(0, 0.4)                            what the features cannot see

    ``[x]`` is 1 when x holds, else 0. The latent Normal term and the Bernoulli
    draw cap what any model can learn: about 26 % of customers churn (37 % on
    basic, 19 % on standard, 14 % on premium) and a gradient-boosted model
    trained on 20 days x 400 rows reaches a ROC AUC of about 0.85 on the latest
    20 % (tests/unit/simulation/test_generate.py checks 0.78-0.92).

Drift (:class:`~include.simulation.drift.DriftConfig`, applied to days >= ``start``, scaled by ``strength``)
    covariate   The population moves, the relation stays: usage falls
                (x exp(-0.3 s)), support calls rise (rate x (1 + 0.5 s)), prices
                rise (x (1 + 0.15 s)), logins get rarer (mean x (1 + 0.3 s),
                dormant share x (1 + 0.5 s)) and the plan mix tilts towards
                basic (shares x exp(+-0.5 s)). Churn rises (about 43 % at s = 1)
                because the same relation now meets riskier customers.
    concept     The customers stay, the relation moves (a competitor targets
                heavy users): the usage effect flips sign (heavy users now
                leave), support calls stop mattering, premium customers churn
                more and price matters more. Coefficients are interpolated
                ``old + s (new - old)``; at s = 1 the model above drops from
                about 0.85 to about 0.56 ROC AUC on drifted days.
    both        both of the above.

CLI::

    python -m include.simulation.generate --start 2026-10-01 --days 60 --rows-per-day 400 \\
        [--seed 7] [--drift concept --drift-from 2026-11-10 --drift-strength 1.0] [--spec path]
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from include.data.partitions import to_parquet_bytes
from include.data.spec import DatasetSpec
from include.simulation.drift import DriftConfig, add_drift_arguments, drift_from_args
from include.util.cli import parse_date_arg
from include.util.fs import write_atomically

# The demo's schema: the generator refuses a spec that asks for anything else.
NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "support_calls_30d",
    "usage_hours_30d",
    "days_since_last_login",
    "num_devices",
)
CATEGORIES = {
    "plan": ("basic", "standard", "premium"),
    "region": ("north", "south", "east", "west"),
    "payment_method": ("card", "bank_transfer", "paypal", "invoice"),
    "contract": ("monthly", "annual", "two_year"),
}

PLAN_SHARE = np.array([0.45, 0.35, 0.20])
CONTRACT_SHARE_BY_PLAN = np.array(
    [
        [0.65, 0.25, 0.10],  # basic
        [0.50, 0.32, 0.18],  # standard
        [0.40, 0.35, 0.25],  # premium
    ]
)
REGION_SHARE = np.array([0.28, 0.24, 0.26, 0.22])
PAYMENT_SHARE = np.array([0.42, 0.24, 0.20, 0.14])
PLAN_BASE_PRICE = np.array([25.0, 55.0, 95.0])
PLAN_USAGE_HOURS = np.array([40.0, 70.0, 110.0])
PLAN_EXTRA_DEVICES = np.array([0.8, 1.6, 2.8])
TENURE_SHAPE_SCALE_BY_CONTRACT = np.array([[1.3, 12.0], [2.2, 14.0], [3.0, 15.0]])
LATENT_NOISE_SD = 0.4

# Label coefficients before and after concept drift; see the module docstring.
COEFFICIENTS = {
    "intercept": -2.85,
    "contract_monthly": 1.20,
    "contract_two_year": -0.90,
    "log_tenure": -0.66,
    "support_calls": 0.38,
    "log_usage": -1.02,
    "login_months": 0.54,
    "overpay": 0.03,
    "plan_basic": 0.36,
    "plan_premium": -0.30,
    "pay_invoice": 0.42,
    "pay_card": -0.24,
    "support_x_monthly": 0.24,
    "low_usage_x_high_charges": 0.72,
    "new_x_two_year": -0.60,
}
CONCEPT_DRIFTED_COEFFICIENTS = {
    **COEFFICIENTS,
    "intercept": -2.65,
    "log_usage": 0.84,
    "support_calls": 0.0,
    "support_x_monthly": 0.0,
    "plan_basic": -0.24,
    "plan_premium": 0.96,
    "overpay": 0.06,
    "low_usage_x_high_charges": -0.48,
    "login_months": -0.18,
}


def check_spec(spec: DatasetSpec) -> None:
    """Fail clearly when ``spec`` describes a dataset other than the one this module generates.

    Returns None. Raises ``ValueError`` listing every numeric feature, categorical feature
    or category that differs from the demo ``customer_churn`` schema.
    """
    numeric = set(spec.numeric_features)
    categorical = {name: spec.feature(name).categories for name in spec.categorical_features}
    problems = []
    if numeric != set(NUMERIC_FEATURES):
        problems.append(f"numeric features {sorted(numeric)} != {sorted(NUMERIC_FEATURES)}")
    if set(categorical) != set(CATEGORIES):
        problems.append(f"categorical features {sorted(categorical)} != {sorted(CATEGORIES)}")
    else:
        for name, categories in CATEGORIES.items():
            if set(categorical[name]) != set(categories):
                problems.append(f"{name} categories {list(categorical[name])} != {list(categories)}")
    if problems:
        raise ValueError(
            f"include.simulation.generate only produces the demo customer_churn dataset; "
            f"spec '{spec.name}' ({spec.source}) differs: " + "; ".join(problems)
        )


def _streams(seed: int, day: date, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    # One independent stream per feature: a feature's draws never shift because
    # another feature drew more numbers (e.g. a Poisson with a drifted rate).
    children = np.random.SeedSequence([seed, day.toordinal()]).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=False)}


# A stream is keyed by its position here: append new names, never insert, or every
# later stream (and so all previously landed data) changes.
_STREAM_NAMES = (
    "event_time",
    "plan",
    "contract",
    "region",
    "payment_method",
    "tenure_months",
    "num_devices",
    "monthly_charges",
    "usage_hours_30d",
    "days_since_last_login",
    "dormant",
    "support_calls_30d",
    "latent",
    "label",
)


def _pick(uniform: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Index of the category each uniform draw falls in; ``shares`` is (k,) or (n, k)."""
    cumulative = np.cumsum(shares, axis=-1)
    cumulative = cumulative / cumulative[..., -1:]
    if cumulative.ndim == 1:
        return np.searchsorted(cumulative, uniform, side="right").clip(max=len(shares) - 1)
    return (uniform[:, None] >= cumulative).sum(axis=1).clip(max=cumulative.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _coefficients(concept_strength: float) -> dict[str, float]:
    return {
        name: old + concept_strength * (CONCEPT_DRIFTED_COEFFICIENTS[name] - old) for name, old in COEFFICIENTS.items()
    }


def _check_args(day: date, rows: int, seed: int) -> None:
    if not isinstance(day, date):
        raise ValueError(f"day must be a datetime.date, got {day!r}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def generate_day(spec: DatasetSpec, day: date, rows: int, seed: int, drift: DriftConfig | None = None) -> pd.DataFrame:
    """One day of customers; the same arguments give the same frame.

    Returns a frame of ``rows`` rows in event-time order whose columns are exactly
    ``spec.columns``. Raises ``ValueError`` when ``spec`` is not the demo schema
    (:func:`check_spec`), ``day`` is not a date, ``rows`` or ``seed`` is out of range,
    or ``drift`` is not a :class:`DriftConfig`.
    """
    check_spec(spec)
    _check_args(day, rows, seed)
    if drift is not None and not isinstance(drift, DriftConfig):
        raise ValueError(f"drift must be a DriftConfig or None, got {drift!r}")
    shift = drift.covariate_strength(day) if drift else 0.0
    beta = _coefficients(drift.concept_strength(day) if drift else 0.0)
    rng = _streams(seed, day, _STREAM_NAMES)
    n = rows

    def bounds(name: str) -> tuple[float, float]:
        feature = spec.feature(name)
        return (-np.inf if feature.min is None else feature.min, np.inf if feature.max is None else feature.max)

    # Covariate drift tilts the plan mix towards basic: downgrades under price pressure.
    plan_share = PLAN_SHARE * np.exp(np.array([0.5, 0.0, -0.5]) * shift)
    plan = _pick(rng["plan"].random(n), plan_share)
    contract = _pick(rng["contract"].random(n), CONTRACT_SHARE_BY_PLAN[plan])
    region = _pick(rng["region"].random(n), REGION_SHARE)
    payment = _pick(rng["payment_method"].random(n), PAYMENT_SHARE)

    shape, scale = TENURE_SHAPE_SCALE_BY_CONTRACT[contract].T
    tenure = np.floor(rng["tenure_months"].standard_gamma(shape) * scale).clip(*bounds("tenure_months"))

    devices = (1 + rng["num_devices"].poisson(PLAN_EXTRA_DEVICES[plan])).astype(float)
    devices = devices.clip(*bounds("num_devices"))

    base_price = PLAN_BASE_PRICE[plan]
    charges = (base_price + 6.0 * (devices - 1) + rng["monthly_charges"].normal(0.0, 7.0, n)) * (1 + 0.15 * shift)
    charges = np.round(charges.clip(*bounds("monthly_charges")), 2)

    usage_mean = (PLAN_USAGE_HOURS[plan] + 8.0 * devices) * np.exp(-0.3 * shift)
    usage = rng["usage_hours_30d"].standard_gamma(2.5, n) * usage_mean / 2.5
    usage = np.round(usage.clip(*bounds("usage_hours_30d")), 1)

    login_mean = (3.0 + 300.0 / (usage + 10.0)) * (1 + 0.3 * shift)
    days_since_login = rng["days_since_last_login"].standard_exponential(n) * login_mean
    dormant = rng["dormant"].random(n) < 0.06 * (1 + 0.5 * shift)
    days_since_login = np.where(dormant, 30.0 + rng["dormant"].random(n) * 335.0, days_since_login)
    days_since_login = np.floor(days_since_login).clip(*bounds("days_since_last_login"))

    support_rate = (0.5 + 0.5 * (plan == 0) + 0.9 * (tenure < 6) + 0.15 * (devices - 1)) * (1 + 0.5 * shift)
    support = rng["support_calls_30d"].poisson(support_rate).astype(float).clip(*bounds("support_calls_30d"))

    monthly, two_year = contract == 0, contract == 2
    logit = (
        beta["intercept"]
        + beta["contract_monthly"] * monthly
        + beta["contract_two_year"] * two_year
        + beta["log_tenure"] * (np.log1p(tenure) - 2.2)
        + beta["support_calls"] * support
        + beta["log_usage"] * (np.log1p(usage) - 4.0)
        + beta["login_months"] * days_since_login / 30.0
        + beta["overpay"] * (charges - base_price)
        + beta["plan_basic"] * (plan == 0)
        + beta["plan_premium"] * (plan == 2)
        + beta["pay_invoice"] * (payment == 3)
        + beta["pay_card"] * (payment == 0)
        + beta["support_x_monthly"] * support * monthly
        + beta["low_usage_x_high_charges"] * ((usage < 20) & (charges > 80))
        + beta["new_x_two_year"] * ((tenure < 6) & two_year)
        + rng["latent"].normal(0.0, LATENT_NOISE_SD, n)
    )
    churned = (rng["label"].random(n) < _sigmoid(logit)).astype(np.int64)

    # Millisecond event times within the UTC day, rows in time order, ids numbered in that order.
    offsets_ms = np.sort(rng["event_time"].integers(0, 86_400_000, n))
    event_time = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(offsets_ms, unit="ms")

    values = {
        spec.id_column: np.array([f"C{day:%Y%m%d}-{i:06d}" for i in range(n)], dtype=object),
        spec.timestamp_column: pd.DatetimeIndex(event_time).as_unit("ns"),
        "tenure_months": tenure,
        "monthly_charges": charges,
        "support_calls_30d": support,
        "usage_hours_30d": usage,
        "days_since_last_login": days_since_login,
        "num_devices": devices,
        "plan": np.array(CATEGORIES["plan"], dtype=object)[plan],
        "region": np.array(CATEGORIES["region"], dtype=object)[region],
        "payment_method": np.array(CATEGORIES["payment_method"], dtype=object)[payment],
        "contract": np.array(CATEGORIES["contract"], dtype=object)[contract],
        spec.target: churned,
    }
    frame = pd.DataFrame({column: values[column] for column in spec.columns})
    for name in NUMERIC_FEATURES:
        frame[name] = frame[name].astype("float64")
    return frame


def generate_days(
    spec: DatasetSpec, start: date, days: int, rows_per_day: int, seed: int = 7, drift: DriftConfig | None = None
) -> pd.DataFrame:
    """``days`` consecutive days from ``start`` (:func:`generate_day` each), as one frame with a fresh index.

    Raises ``ValueError`` for a ``days`` that is not a positive integer and whatever :func:`generate_day` raises.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    return pd.concat(
        [generate_day(spec, start + timedelta(days=offset), rows_per_day, seed, drift) for offset in range(days)],
        ignore_index=True,
    )


def partition_path(spec: DatasetSpec, day: date) -> Path:
    """The file :func:`land_days` writes ``day`` to: ``<location>/date=YYYY-MM-DD/part-0.parquet``."""
    return Path(spec.location) / f"date={day:%Y-%m-%d}" / "part-0.parquet"


def land_days(
    spec: DatasetSpec, start: date, days: int, rows_per_day: int, seed: int = 7, drift: DriftConfig | None = None
) -> list[Path]:
    """Write ``days`` daily partitions from ``start``; re-landing a day rewrites the same bytes.

    Returns the partition files, one per day in order. Raises ``ValueError`` for a
    ``days`` that is not a positive integer and whatever :func:`generate_day` raises;
    ``OSError`` when a file cannot be written.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    paths = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        payload = to_parquet_bytes(generate_day(spec, day, rows_per_day, seed, drift))
        path = partition_path(spec, day)
        # An identical file is left alone, so a re-run changes neither bytes nor mtime.
        if not (path.is_file() and path.read_bytes() == payload):
            write_atomically(path, payload)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring). Returns 0; invalid arguments exit with status 2."""
    from include.data.spec import load_spec
    from include.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m include.simulation.generate",
        description="Land seeded daily partitions of the demo customer_churn dataset.",
    )
    parser.add_argument("--start", type=parse_date_arg, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, required=True, help="number of consecutive days")
    parser.add_argument("--rows-per-day", type=int, required=True, help="customers per day")
    parser.add_argument("--seed", type=int, default=7, help="base seed (default 7)")
    add_drift_arguments(parser)
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    args = parser.parse_args(argv)

    drift = drift_from_args(parser, args)
    try:
        spec = load_spec(args.spec or Settings.from_env().dataset_spec)
        paths = land_days(spec, args.start, args.days, args.rows_per_day, args.seed, drift)
    except ValueError as exc:
        parser.error(str(exc))
    end = args.start + timedelta(days=args.days - 1)
    drifted = f", {drift.kind} drift x{drift.strength:g} from {drift.start}" if drift else ""
    print(
        f"wrote {len(paths)} days x {args.rows_per_day} rows ({len(paths) * args.rows_per_day} rows) "
        f"of {spec.name}, {args.start}..{end}{drifted}, to {spec.location}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
