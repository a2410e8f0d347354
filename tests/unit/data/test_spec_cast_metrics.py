"""The dataset spec, the one cast at the data boundary, and the task-aware metrics."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from include.data.cast import CastError, categorical_column, model_input, numeric_column, target_array
from include.data.spec import SpecError, load_spec
from include.evaluation import metrics
from include.evaluation.gate import decide

BASE = """
name: t
location: /tmp/unused
target: y
expectation_suite: suite.json
"""


def _spec(tmp_path, body: str):
    path = tmp_path / "spec.yaml"
    path.write_text(BASE + textwrap.dedent(body))
    return load_spec(path)


def test_unquoted_yaml_yes_no_in_categories_is_refused_with_a_hint(tmp_path):
    with pytest.raises(SpecError, match=r"features\[0\].*boolean True.*quote them"):
        _spec(
            tmp_path,
            """
            features:
              - {name: smoker, type: categorical, categories: [yes, no]}
        """,
        )
    spec = _spec(
        tmp_path,
        """
        features:
          - {name: smoker, type: categorical, categories: ["yes", "no"]}
    """,
    )
    assert spec.feature("smoker").categories == ("yes", "no")


@pytest.mark.parametrize(
    "body, message",
    [
        ("task: binary\nclasses: [a, b, c]\n", "binary task has two classes"),
        ("task: binary\nclasses: [a, b]\npositive_class: c\n", "positive_class 'c' is not one of"),
        ("task: multiclass\nclasses: [a, b]\n", "needs 'classes' with at least 3"),
        ("task: regression\npositive_class: 1\n", "binary tasks only"),
        ("task: regression\ngate: {metric: roc_auc}\n", "does not fit task 'regression'"),
        ("task: ranking\n", "task must be one of"),
        ("gate: {metric: roc_auc, floor: 0.5}\n", "unknown key"),
    ],
)
def test_specs_that_cannot_work_are_refused_naming_the_key(tmp_path, body, message):
    with pytest.raises(SpecError, match=message):
        _spec(tmp_path, body + "features:\n  - {name: x, type: numeric}\n")


def test_spec_defaults_per_task_and_optional_id_and_timestamp(tmp_path):
    spec = _spec(
        tmp_path,
        """
        task: regression
        features:
          - {name: x, type: numeric, nullable: true}
          - {name: code, type: categorical, categories: [1, 2.0, "3"]}
    """,
    )
    assert (spec.gate.metric, spec.gate.min, spec.gate.higher_is_better) == ("rmse", None, False)
    assert (spec.id_column, spec.timestamp_column, spec.derived_id, spec.derived_timestamp) == (
        "row_id",
        "event_time",
        True,
        True,
    )
    assert spec.feature("code").categories == ("1", "2", "3") and spec.feature("x").nullable
    assert spec.slice_feature is None


def test_the_cast_gives_one_representation_for_every_real_dtype(tmp_path):
    spec = _spec(
        tmp_path,
        """
        features:
          - {name: count, type: numeric}
          - {name: code, type: categorical, categories: [1, 2, 3]}
          - {name: plan, type: categorical, categories: [basic, premium]}
    """,
    )
    variants = [
        pd.DataFrame({"count": np.array([3, 4], dtype="int8"), "code": [1, 2], "plan": ["basic", "premium"]}),
        pd.DataFrame(
            {"count": pd.array([3, 4], dtype="Int64"), "code": [1.0, 2.0], "plan": pd.Categorical(["basic", "premium"])}
        ),
        pd.DataFrame(
            {
                "count": np.array([3.0, 4.0], dtype="float32"),
                "code": ["1", "2"],
                "plan": np.array(["basic", "premium"], dtype=object),
            }
        ),
    ]
    typed = [model_input(frame, spec) for frame in variants]
    for frame in typed:
        assert frame["count"].dtype == np.float64 and frame["code"].tolist() == ["1", "2"]
        assert frame["plan"].tolist() == ["basic", "premium"]
        pd.testing.assert_frame_equal(frame, typed[0])
    nulls = model_input(
        pd.DataFrame(
            {
                "count": pd.array([None, 4], dtype="Int64"),
                "code": pd.array([None, 2], dtype="Int64"),
                "plan": [None, "basic"],
            }
        ),
        spec,
    )
    assert np.isnan(nulls["count"].iloc[0]) and nulls["code"].iloc[0] is None and nulls["plan"].iloc[0] is None
    with pytest.raises(CastError, match=r"'count' holds non-numeric values, e.g. row 1 holds 'four'"):
        numeric_column(pd.Series(["3", "four"]), "count")
    assert categorical_column(np.array([True, False], dtype=object), "flag").tolist() == ["true", "false"]


def test_target_is_typed_per_task_and_bad_labels_name_an_example_row(tmp_path):
    binary = _spec(tmp_path, 'task: binary\npositive_class: "yes"\nfeatures: [{name: x, type: numeric}]\n')
    assert target_array(pd.Series(["yes", "no", "yes"]), binary).tolist() == [1, 0, 1]
    with pytest.raises(CastError, match="more than two values"):
        target_array(pd.Series(["yes", "no", "maybe"]), binary)
    multiclass = _spec(tmp_path, "task: multiclass\nclasses: [a, b, c]\nfeatures: [{name: x, type: numeric}]\n")
    with pytest.raises(CastError, match=r"outside the declared classes.*row 1 holds 'd'"):
        target_array(pd.Series(["a", "d"]), multiclass)
    regression = _spec(tmp_path, "task: regression\nfeatures: [{name: x, type: numeric}]\n")
    assert target_array(pd.Series([1, 2], dtype="int64"), regression).dtype == np.float64
    with pytest.raises(CastError, match="missing label"):
        target_array(pd.Series([1.0, None]), regression)


def test_metrics_per_task_and_the_no_skill_baseline():
    labels = np.array([0, 0, 1, 1])
    binary = metrics.score("binary", labels, {"probability": np.array([0.1, 0.4, 0.35, 0.8])})
    assert binary["roc_auc"] == pytest.approx(0.75) and set(binary) == {"roc_auc", "pr_auc", "log_loss", "rows"}
    assert metrics.score("binary", np.array([1, 1]), {"probability": np.array([0.4, 0.9])})["roc_auc"] is None

    classes = ["a", "b", "c"]
    outputs = {
        "prediction": np.array(["a", "b", "b", "c"], dtype=object),
        **{f"probability_{name}": np.full(4, 1 / 3) for name in classes},
    }
    multiclass = metrics.score("multiclass", np.array(["a", "b", "c", "c"], dtype=object), outputs, classes)
    assert multiclass["recall"] == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert metrics.baseline(
        "multiclass", "macro_f1", np.array(["a", "a", "b"], dtype=object), classes
    ) == pytest.approx(0.4)

    regression = metrics.score("regression", np.array([1.0, 2.0, 3.0]), {"prediction": np.array([1.0, 2.0, 5.0])})
    assert regression["rmse"] == pytest.approx(np.sqrt(4 / 3)) and regression["mae"] == pytest.approx(2 / 3)
    assert metrics.baseline("regression", "rmse", np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(2 / 3))


def _regression_evaluation(challenger_rmse, champion_rmse=None, baseline=60.0):
    def side(rmse):
        return {
            "overall": {"rmse": rmse, "mae": rmse * 0.8, "r2": 0.4},
            "slices": {"1": {"rmse": rmse}},
            "latency_ms": {"p50": 1.0, "p95": 2.0, "method": "cpu"},
            "latency_budget_ms": 50.0,
            "within_latency_budget": True,
        }

    return {
        "task": "regression",
        "metric": "rmse",
        "higher_is_better": False,
        "baseline": baseline,
        "slice_feature": "sex",
        "challenger": side(challenger_rmse),
        "champion": None if champion_rmse is None else side(champion_rmse),
    }


def test_the_gate_reads_an_error_metric_as_a_ceiling_and_beats_the_baseline_without_a_bar():
    assert decide(_regression_evaluation(55.0), None, 5.0).passed
    rejected = decide(_regression_evaluation(61.0), None, 5.0)
    assert not rejected.passed and "rmse 61.000 >= the no-skill baseline 60.000" in rejected.reason
    ceiling = decide(_regression_evaluation(55.0), 50.0, 5.0)
    assert not ceiling.passed and ceiling.checks[0].name == "max_rmse"
    # a larger RMSE is a regression: 57 vs a 50 champion loses 7 > 5
    worse = decide(_regression_evaluation(57.0, champion_rmse=50.0), None, 5.0)
    assert not worse.passed and "overall regressed 7.000 > max_regression 5.000" in worse.reason
    assert decide(_regression_evaluation(52.0, champion_rmse=50.0), None, 5.0).passed
    assert decide(_regression_evaluation(52.0, champion_rmse=50.0), None, 5.0).as_tags()["gate.metric"] == "rmse"
