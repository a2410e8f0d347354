"""A paired shadow decision with real models on a public table (scikit-learn's breast cancer data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from include.data.rollout_spec import RolloutSpec
from include.data.spec import load_spec
from include.rollout.decision import RolloutState, decide
from tests.integration.public_data import write_breast_cancer

START = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def live_rows(tmp_path_factory):
    """The second export answered by a weak champion (two features) and a strong candidate (all 30),
    both fitted on the first export; labels as the export holds them (malignant / benign)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    dataset = write_breast_cancer(tmp_path_factory.mktemp("breast_cancer"))
    spec = load_spec(dataset.spec_path)
    (train_file,), _ = dataset.exports[0]
    (live_file,), _ = dataset.exports[1]
    train, live = pd.read_csv(train_file), pd.read_csv(live_file)
    target = (train[spec.target] == spec.positive_class).astype(int)
    weak = ["mean texture", "mean symmetry"]
    champion = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train[weak], target)
    candidate = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        train[spec.feature_names], target
    )
    p_champion = champion.predict_proba(live[weak])[:, 1]
    p_candidate = candidate.predict_proba(live[spec.feature_names])[:, 1]
    frame = pd.DataFrame(
        {
            "timestamp": START + pd.to_timedelta(np.arange(len(live)), unit="min"),
            "model_version": "1",
            "probability": p_champion,
            "prediction": (p_champion > 0.5).astype(int),
            "other_version": "2",
            "other_probability": p_candidate,
            "other_prediction": (p_candidate > 0.5).astype(int),
            "label": live[spec.target].to_numpy(dtype=object),
        }
    )
    return spec, frame


def test_a_stronger_real_candidate_in_shadow_is_promoted(live_rows):
    spec, frame = live_rows
    rules = RolloutSpec(mode="shadow", min_labelled_rows=100)
    state = RolloutState("2", "1", "shadow", START)
    decision = decide(frame, spec, rules, state, START + timedelta(days=1))
    assert decision.action == "promote", decision.reason
    overall = decision.numbers["overall"]
    assert overall["candidate"] > 0.97 and overall["champion"] < overall["candidate"]
    assert decision.numbers["labelled_rows"] == {"candidate": len(frame), "champion": len(frame)}


def test_the_same_real_models_swapped_are_rolled_back(live_rows):
    spec, frame = live_rows
    swapped = frame.rename(
        columns={
            "probability": "other_probability",
            "other_probability": "probability",
            "prediction": "other_prediction",
            "other_prediction": "prediction",
        }
    )
    rules = RolloutSpec(mode="shadow", min_labelled_rows=100)
    decision = decide(swapped, spec, rules, RolloutState("2", "1", "shadow", START), START + timedelta(days=1))
    assert decision.action == "rollback", decision.reason
