"""TabularPreprocessor: statistics from the training frame only, fixed one-hot layout, JSON state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from include.training.preprocessing import PreprocessingError, TabularPreprocessor
from tests.unit.churn_frame import make_frame


@pytest.fixture
def train_frame(spec):
    return make_frame(spec, 300, seed=3)


def test_numeric_features_are_standardised_with_training_statistics(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    matrix = preprocessor.transform(train_frame)

    assert matrix.dtype == np.float32
    assert matrix.shape == (len(train_frame), preprocessor.output_dim)
    numeric = matrix[:, : len(spec.numeric_features)]
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(numeric.std(axis=0), 1.0, atol=1e-4)

    # another frame is scaled with the training statistics, not its own
    other = make_frame(spec, 50, seed=4)
    tenure = preprocessor.transform(other)[:, 0]
    expected = (other["tenure_months"] - train_frame["tenure_months"].mean()) / train_frame["tenure_months"].std(ddof=0)
    np.testing.assert_allclose(tenure, expected.to_numpy(), rtol=1e-5, atol=1e-5)


def test_missing_numeric_value_is_imputed_with_the_training_mean(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    row = train_frame.head(1).copy()
    row["tenure_months"] = row["tenure_months"].astype("float64")
    row.loc[row.index[0], "tenure_months"] = np.nan

    matrix = preprocessor.transform(row)

    assert matrix[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(matrix).all()


def test_missing_values_in_training_do_not_bias_the_mean(spec, train_frame):
    frame = train_frame.copy()
    frame["monthly_charges"] = frame["monthly_charges"].astype("float64")
    frame.loc[frame.index[:100], "monthly_charges"] = np.nan

    state = TabularPreprocessor.from_spec(spec).fit(frame).to_dict()

    stats = {item["name"]: item for item in state["numeric"]}
    assert stats["monthly_charges"]["mean"] == pytest.approx(train_frame["monthly_charges"].iloc[100:].mean())


def test_categorical_features_are_one_hot_over_the_spec_categories(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    names = preprocessor.output_names
    row = train_frame.head(1).copy()
    row["plan"] = "premium"
    row["contract"] = "monthly"

    encoded = dict(zip(names, preprocessor.transform(row)[0], strict=True))

    assert [encoded[f"plan={value}"] for value in ("basic", "standard", "premium")] == [0.0, 0.0, 1.0]
    assert [encoded[f"contract={value}"] for value in ("monthly", "annual", "two_year")] == [1.0, 0.0, 0.0]
    # the layout comes from the spec even when a category never occurs in training
    only_basic = train_frame.assign(plan="basic")
    assert TabularPreprocessor.from_spec(spec).fit(only_basic).output_names == names


def test_unseen_or_missing_category_encodes_as_all_zeros(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    plan_columns = [index for index, name in enumerate(preprocessor.output_names) if name.startswith("plan=")]
    rows = train_frame.head(3).copy()
    rows["plan"] = ["enterprise", None, "basic"]

    matrix = preprocessor.transform(rows)

    assert matrix[0, plan_columns].tolist() == [0.0, 0.0, 0.0]
    assert matrix[1, plan_columns].tolist() == [0.0, 0.0, 0.0]
    assert matrix[2, plan_columns].tolist() == [1.0, 0.0, 0.0]


def test_integer_coded_categories_match_string_categories():
    preprocessor = TabularPreprocessor(["x"], {"tier": ["1", "2"]}).fit(pd.DataFrame({"x": [1.0, 2.0], "tier": [1, 2]}))

    matrix = preprocessor.transform(pd.DataFrame({"x": [1.0, 1.0], "tier": [2, 1]}))

    assert matrix[:, 1:].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_missing_required_column_is_a_clear_error(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)

    with pytest.raises(PreprocessingError, match="missing required feature column.*support_calls_30d.*region"):
        preprocessor.transform(train_frame.drop(columns=["support_calls_30d", "region"]))
    with pytest.raises(PreprocessingError, match="missing required feature column.*plan"):
        TabularPreprocessor.from_spec(spec).fit(train_frame.drop(columns=["plan"]))


def test_non_numeric_value_in_numeric_feature_is_a_clear_error(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    rows = train_frame.head(2).copy()
    rows["num_devices"] = rows["num_devices"].astype(object)
    rows.loc[rows.index[0], "num_devices"] = "three"

    with pytest.raises(PreprocessingError, match="num_devices.*non-numeric.*three"):
        preprocessor.transform(rows)


def test_object_column_of_numbers_and_none_is_accepted(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    rows = train_frame.head(2).copy()
    rows["num_devices"] = pd.Series([3, None], index=rows.index, dtype=object)

    matrix = preprocessor.transform(rows)

    column = preprocessor.output_names.index("num_devices")
    assert matrix[1, column] == pytest.approx(0.0, abs=1e-6)
    assert matrix[0, column] != 0.0


def test_a_mapping_of_columns_transforms_like_the_frame_it_came_from(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)
    rows = train_frame.head(20)
    columns = {name: rows[name].to_numpy() for name in preprocessor.feature_names}
    columns["monthly_charges"] = columns["monthly_charges"].astype(np.float64)
    columns["plan"] = columns["plan"].astype(object)

    np.testing.assert_array_equal(preprocessor.transform(columns), preprocessor.transform(rows))
    with pytest.raises(PreprocessingError, match="differ in length"):
        preprocessor.transform({**columns, "plan": columns["plan"][:3]})
    with pytest.raises(PreprocessingError, match="missing required feature column.*tenure_months"):
        preprocessor.transform({name: values for name, values in columns.items() if name != "tenure_months"})


def test_json_round_trip_reproduces_the_transform(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec).fit(train_frame)

    restored = TabularPreprocessor.from_dict(json.loads(json.dumps(preprocessor.to_dict())))

    other = make_frame(spec, 40, seed=9)
    np.testing.assert_array_equal(restored.transform(other), preprocessor.transform(other))
    assert restored.output_names == preprocessor.output_names


def test_unfitted_or_malformed_state_is_rejected(spec, train_frame):
    preprocessor = TabularPreprocessor.from_spec(spec)
    with pytest.raises(PreprocessingError, match="not fitted"):
        preprocessor.transform(train_frame)
    with pytest.raises(PreprocessingError, match="unfitted"):
        preprocessor.to_dict()

    state = preprocessor.fit(train_frame).to_dict()
    with pytest.raises(PreprocessingError, match="format_version"):
        TabularPreprocessor.from_dict({**state, "format_version": 99})
    broken = json.loads(json.dumps(state))
    broken["numeric"][0]["std"] = 0.0
    with pytest.raises(PreprocessingError, match="invalid mean/std"):
        TabularPreprocessor.from_dict(broken)
    with pytest.raises(PreprocessingError, match="malformed"):
        TabularPreprocessor.from_dict({"format_version": 1, "numeric": [{"name": "x"}], "categorical": []})


def test_constant_and_all_missing_training_columns(spec, train_frame):
    constant = train_frame.assign(num_devices=2)
    matrix = TabularPreprocessor.from_spec(spec).fit_transform(constant)
    assert np.isfinite(matrix).all()

    empty = train_frame.assign(num_devices=np.nan)
    with pytest.raises(PreprocessingError, match="num_devices.*no non-missing value"):
        TabularPreprocessor.from_spec(spec).fit(empty)
