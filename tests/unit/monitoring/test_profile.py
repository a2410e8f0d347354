"""The champion's monitoring profile: built once, stored with the version, read back by every check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.monitoring import profile
from include.monitoring.drift import reference_for_champion
from tests.unit.monitoring.test_drift import _register_champion


def test_the_profile_is_stored_with_the_version_and_read_back_without_the_training_data(mlops_env, spec, monkeypatch):
    from include import registry, tracking

    tracking.configure(mlops_env)
    version, *_ = _register_champion(mlops_env, spec)

    built = profile.store_profile(mlops_env, spec, version)

    assert registry.version_tags(mlops_env.model_name, version)[profile.PROFILE_TAG] == profile.PROFILE_FORMAT
    # the nightly check neither re-reads the snapshot nor recomputes the nulls: both are refused here
    monkeypatch.setattr(profile, "build_reference", lambda *a, **k: pytest.fail("the snapshot was read again"))
    monkeypatch.setattr(
        profile.drift_columns, "reference_column", lambda *a, **k: pytest.fail("a null was drawn again")
    )
    loaded = reference_for_champion(mlops_env, spec)

    pd.testing.assert_frame_equal(loaded.frame, built.frame)
    assert loaded.columns == built.columns and set(loaded.columns) == {*spec.feature_names, "probability"}
    assert loaded.model_version == version and loaded.data_ref == built.data_ref
    assert loaded.holdout_score == pytest.approx(built.holdout_score)
    # a binary champion carries its CBPE calibration, fitted on its held-out rows
    assert loaded.calibrator == built.calibrator and loaded.calibrator["format"]
    assert loaded.holdout_roc_auc == pytest.approx(built.holdout_roc_auc)


def test_a_champion_without_a_profile_gets_one_built_by_the_first_check(mlops_env, spec):
    from include import registry, tracking

    tracking.configure(mlops_env)
    version, *_ = _register_champion(mlops_env, spec)
    assert profile.PROFILE_TAG not in registry.version_tags(mlops_env.model_name, version)

    first = reference_for_champion(mlops_env, spec)

    assert registry.version_tags(mlops_env.model_name, version)[profile.PROFILE_TAG] == profile.PROFILE_FORMAT
    again = reference_for_champion(mlops_env, spec)
    assert np.array_equal(again.frame["probability"], first.frame["probability"])
    assert again.columns == first.columns
