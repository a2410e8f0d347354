"""The serving app for every task: a multiclass and a regression model, and plain pyfuncs of each shape.

The project's models are real ``torch_mlp`` fits of two public datasets (Palmer
penguins, multiclass; scikit-learn's diabetes, regression), trained and logged by
``train_and_log`` and registered in a real SQLite registry; the app runs in process
(FastAPI's TestClient) as in test_serving_app.py. "The registered model's answer"
is always MLflow's own ``load_model(uri).predict`` on the frame typed by
:func:`include.data.cast.model_input`: the server must answer exactly that, whatever
JSON form the request gives a value in.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from include.data.cast import model_input, target_array
from include.data.spec import DatasetSpec, load_spec
from include.monitoring.inference_log import read_window, write_labels
from include.serving.app import create_app
from include.serving.batching import MicroBatcher
from include.serving.model import load_served_model
from include.training.model import output_columns
from include.training.train import TrainingConfig, train_and_log
from tests.unit.serving_models import (
    GarbageModel,
    LabelOutOfRangeModel,
    ThreeClassModel,
    ValueModel,
    private_registry,
    register,
    sample_frame,
)

UTC = UTC
DAY = date(2026, 5, 4)
REQUEST_TIME = "2026-05-04T10:00:00Z"
PENGUIN_CLASSES = ["Adelie", "Chinstrap", "Gentoo"]

PENGUINS_SPEC = """
    name: penguins
    location: /nonexistent/penguins
    task: multiclass
    target: species
    classes: [Adelie, Chinstrap, Gentoo]
    expectation_suite: include/validation/suites/customer_churn.json
    features:
      - {name: island, type: categorical, categories: [Biscoe, Dream, Torgersen]}
      - {name: sex, type: categorical, categories: [male, female], nullable: true}
      - {name: year, type: categorical, categories: [2007, 2008, 2009]}
      - {name: bill_length_mm, type: numeric, nullable: true}
      - {name: bill_depth_mm, type: numeric, nullable: true}
      - {name: flipper_length_mm, type: numeric, nullable: true}
      - {name: body_mass_g, type: numeric, nullable: true}
"""

DIABETES_SPEC = """
    name: diabetes
    location: /nonexistent/diabetes
    task: regression
    target: target
    expectation_suite: include/validation/suites/customer_churn.json
    features:
      - {name: age, type: numeric}
      - {name: sex, type: categorical, categories: [1, 2]}
      - {name: bmi, type: numeric}
      - {name: bp, type: numeric}
      - {name: s1, type: numeric}
      - {name: s2, type: numeric}
      - {name: s3, type: numeric}
      - {name: s4, type: numeric}
      - {name: s5, type: numeric}
      - {name: s6, type: numeric}
"""


@dataclass
class Served:
    """One registered project model, its spec, its data and the registered version's own answers."""

    name: str
    version: str
    spec: DatasetSpec
    frame: pd.DataFrame  # raw rows as the dataset has them (integer codes, NaN), with the target
    pyfunc: object  # mlflow.pyfunc.load_model of the registered version

    def expected(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The registered model's answer on the cast frame of ``rows``."""
        return self.pyfunc.predict(model_input(rows, self.spec))

    @property
    def outputs(self) -> list[str]:
        return output_columns(self.spec.task, self.spec.classes)


@dataclass
class Registry:
    tracking_uri: str
    tasks: dict[str, Served]
    generic: dict[str, str]


def _with_ids_and_times(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows in a random order with the derived id and event time a snapshot lands with (the holdout
    split is time-ordered: the penguins file is sorted by species)."""
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    shuffled.insert(0, "row_id", [f"row-{index:04d}" for index in range(len(shuffled))])
    shuffled.insert(
        1, "event_time", pd.Timestamp("2024-03-01T00:00:00Z") + pd.to_timedelta(np.arange(len(shuffled)) * 60, unit="s")
    )
    return shuffled


def _spec(tmp_path, text: str) -> DatasetSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path, environ={})


def _train(settings, spec: DatasetSpec, frame: pd.DataFrame, name: str) -> Served:
    from include.registry import register_challenger

    config = TrainingConfig(model_type="torch_mlp", epochs=15, learning_rate=0.01, batch_size=64, seed=3)
    result = train_and_log(frame, spec, config, settings)
    version = register_challenger(name, result.model_uri, result.run_id, {})
    return Served(name, version, spec, frame, mlflow.pyfunc.load_model(f"models:/{name}/{version}"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module: a multiclass and a regression model, and plain pyfuncs."""
    from palmerpenguins import load_penguins
    from sklearn.datasets import load_diabetes

    with private_registry(tmp_path_factory.mktemp("tasks-home")) as settings:
        penguins = _with_ids_and_times(load_penguins(), seed=1)
        diabetes = _with_ids_and_times(load_diabetes(as_frame=True, scaled=False).frame, seed=2)
        diabetes["sex"] = diabetes["sex"].astype(np.int64)  # integer codes, as a real table holds them
        tasks = {
            "multiclass": _train(
                settings, _spec(tmp_path_factory.mktemp("penguins"), PENGUINS_SPEC), penguins, "penguins"
            ),
            "regression": _train(
                settings, _spec(tmp_path_factory.mktemp("diabetes"), DIABETES_SPEC), diabetes, "diabetes"
            ),
        }
        generic = {
            kind: register("generic", model)
            for kind, model in {
                "multiclass": ThreeClassModel(),
                "regression": ValueModel(),
                "garbage": GarbageModel(),
                "label out of range": LabelOutOfRangeModel(),
            }.items()
        }
        yield Registry(settings.tracking_uri, tasks, generic)


@pytest.fixture(scope="module", params=["multiclass", "regression"])
def task(request, registry) -> Served:
    return registry.tasks[request.param]


@pytest.fixture(scope="module")
def client(task, registry):
    with TestClient(create_app(task.name, task.version, registry.tracking_uri)) as test_client:
        yield test_client


def json_rows(rows: pd.DataFrame, columns: list[str]) -> list[dict]:
    """``rows`` as a JSON client sends them: numbers stay numbers (integer codes stay ints), NaN is null."""
    return [
        {
            name: (None if pd.isna(value) else value.item() if hasattr(value, "item") else value)
            for name, value in zip(columns, row, strict=False)
        }
        for row in rows[columns].itertuples(index=False)
    ]


def records(rows: pd.DataFrame, spec: DatasetSpec) -> dict:
    return {"dataframe_records": json_rows(rows, spec.feature_names)}


def split(rows: pd.DataFrame, spec: DatasetSpec) -> dict:
    data = [list(row.values()) for row in json_rows(rows, spec.feature_names)]
    return {"dataframe_split": {"columns": spec.feature_names, "data": data}}


def post(client: TestClient, payload: dict, **headers) -> list[dict]:
    response = client.post(
        "/invocations", content=json.dumps(payload), headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def assert_equals_registered(answers: list[dict], expected: pd.DataFrame) -> None:
    """Every output column of every row, exactly (floats survive JSON to the last bit)."""
    assert [list(item) for item in answers] == [list(expected.columns)] * len(expected)
    for name in expected.columns:
        assert [item[name] for item in answers] == expected[name].tolist(), name


def metrics(client: TestClient) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }


def category_column(task: Served) -> tuple[str, object]:
    """The integer-coded categorical feature of the task's spec, and a code outside its categories."""
    return ("year", 1999) if task.spec.task == "multiclass" else ("sex", 3)


# ------------------------------------------------------------------- answers


@pytest.mark.parametrize("to_payload", [records, split], ids=["dataframe_records", "dataframe_split"])
def test_each_row_is_answered_with_every_output_column_of_the_task(client, task, to_payload):
    rows = task.frame.head(40)

    answers = post(client, to_payload(rows, task.spec))

    expected = task.expected(rows)
    assert list(expected.columns) == task.outputs
    assert_equals_registered(answers, expected)
    if task.spec.task == "multiclass":
        assert task.outputs == ["prediction", "probability", *(f"probability_{name}" for name in PENGUIN_CLASSES)]
        for item in answers:
            by_class = {name: item[f"probability_{name}"] for name in PENGUIN_CLASSES}
            assert item["prediction"] == max(by_class, key=by_class.get)
            assert item["probability"] == by_class[item["prediction"]]
            assert sum(by_class.values()) == pytest.approx(1.0)
        # the model learned something: most of these (training) rows get their own species
        assert np.mean([item["prediction"] for item in answers] == rows["species"].to_numpy()) > 0.7
    else:
        assert task.outputs == ["prediction"]
        assert all(type(item["prediction"]) is float for item in answers)
        assert len({item["prediction"] for item in answers}) > 30, "one value per row, not a constant"


def test_an_integer_coded_category_answers_the_same_as_a_json_number_or_a_string(client, task):
    column, unknown = category_column(task)
    rows = task.frame.head(12)
    as_numbers = records(rows, task.spec)
    assert all(type(row[column]) is int for row in as_numbers["dataframe_records"]), "the JSON holds ints"

    def with_codes(convert) -> dict:
        return {"dataframe_records": [{**row, column: convert(row[column])} for row in as_numbers["dataframe_records"]]}

    answers = {
        form: post(client, payload)
        for form, payload in {"int": as_numbers, "float": with_codes(float), "string": with_codes(str)}.items()
    }

    expected = task.expected(rows)
    for answer in answers.values():
        assert_equals_registered(answer, expected)
    # the code matters to the model: a code outside the categories gets another answer
    other = post(client, with_codes(lambda _: unknown))
    assert [item["prediction"] if task.spec.task == "regression" else item["probability"] for item in other] != [
        item["prediction"] if task.spec.task == "regression" else item["probability"] for item in answers["int"]
    ]


def test_null_in_a_nullable_feature_is_answered_as_the_registered_model_answers_it(registry):
    penguins = registry.tasks["multiclass"]
    complete = penguins.frame.dropna().head(6).reset_index(drop=True)
    missing = complete.copy()
    missing.loc[[0, 1], "sex"] = None
    missing.loc[[1, 2], "bill_length_mm"] = np.nan
    missing.loc[3, ["bill_depth_mm", "flipper_length_mm", "body_mass_g"]] = np.nan
    # and the dataset's own row without any measurement
    missing = pd.concat([missing, penguins.frame[penguins.frame["body_mass_g"].isna()]], ignore_index=True)
    payload = records(missing, penguins.spec)
    assert payload["dataframe_records"][0]["sex"] is None and payload["dataframe_records"][1]["bill_length_mm"] is None

    with TestClient(create_app(penguins.name, penguins.version, registry.tracking_uri)) as client:
        answers = post(client, payload)
        alone = post(client, records(missing.tail(1), penguins.spec))
        complete_answers = post(client, records(complete, penguins.spec))

    assert_equals_registered(answers, penguins.expected(missing))
    assert alone == answers[-1:]
    changed = [answers[index]["probability"] != complete_answers[index]["probability"] for index in range(4)]
    assert all(changed), "the null was sent and imputed, not the complete row's value"


def test_the_null_policy_is_the_dataset_specs_logged_with_the_version(registry):
    penguins = registry.tasks["multiclass"]
    nullable = {feature.name for feature in penguins.spec.features if feature.nullable}
    served = load_served_model(penguins.name, penguins.version, registry.tracking_uri)

    assert penguins.pyfunc.metadata.metadata["nullable_features"] == sorted(
        nullable, key=penguins.spec.feature_names.index
    )
    assert {column.name for column in served.columns if column.nullable} == nullable
    assert served.direct is not None


NOT_NULLABLE = {
    "null in a categorical feature": (lambda rows: rows[0].update(island=None), 422, "island"),
    "null in a numeric feature": (lambda rows: rows[1].update(bill_length_mm=None), None, None),
    "a key left out of one record": (lambda rows: rows[1].pop("year"), 422, "year"),
    "a column left out of every record": (lambda rows: [row.pop("island") for row in rows], 422, "island"),
}


@pytest.mark.parametrize("case", NOT_NULLABLE, ids=list(NOT_NULLABLE))
def test_a_missing_value_of_a_feature_the_spec_does_not_make_nullable_is_a_4xx_naming_it(registry, case):
    penguins = registry.tasks["multiclass"]
    change, status, mentioned = NOT_NULLABLE[case]
    payload = records(penguins.frame.dropna().head(3), penguins.spec)
    change(payload["dataframe_records"])

    with TestClient(create_app(penguins.name, penguins.version, registry.tracking_uri)) as client:
        response = client.post("/invocations", json=payload)

    if status is None:  # bill_length_mm is nullable in the spec: the model imputes it
        assert response.status_code == 200, response.text
        return
    assert response.status_code == status, response.text
    assert mentioned in response.json()["message"]


def test_csv_and_bare_nan_are_answered_as_the_registered_model_answers_them(registry):
    penguins = registry.tasks["multiclass"]
    rows = penguins.frame.dropna().head(4).reset_index(drop=True)
    rows.loc[0, "sex"] = None
    rows.loc[1, "bill_length_mm"] = np.nan
    csv = rows[penguins.spec.feature_names].to_csv(index=False)
    nan_body = json.dumps(records(rows, penguins.spec)).replace('"bill_length_mm": null', '"bill_length_mm": NaN')
    assert "NaN" in nan_body

    with TestClient(create_app(penguins.name, penguins.version, registry.tracking_uri)) as client:
        from_csv = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
        from_nan = client.post("/invocations", content=nan_body, headers={"Content-Type": "application/json"})

    assert from_csv.status_code == 200, from_csv.text
    assert from_nan.status_code == 200, from_nan.text
    assert_equals_registered(from_csv.json()["predictions"], penguins.expected(rows))
    assert_equals_registered(from_nan.json()["predictions"], penguins.expected(rows))


BAD_VALUES = {
    "word in a numeric feature": ("bill_length_mm", "long", "bill_length_mm"),
    "boolean in a numeric feature": ("body_mass_g", True, "body_mass_g"),
    "list in a categorical feature": ("island", ["Dream"], "island"),
    "boolean in a categorical feature": ("year", False, "year"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_a_value_of_the_wrong_kind_is_a_4xx_naming_the_column(registry, case):
    penguins = registry.tasks["multiclass"]
    column, value, mentioned = BAD_VALUES[case]
    payload = records(penguins.frame.dropna().head(3), penguins.spec)
    payload["dataframe_records"][1][column] = value

    with TestClient(create_app(penguins.name, penguins.version, registry.tracking_uri)) as client:
        response = client.post("/invocations", json=payload)
        assert post(client, records(penguins.frame.head(2), penguins.spec))  # and the server keeps answering

    assert response.status_code == 422, response.text
    assert mentioned in response.json()["message"]


def test_a_numeric_string_is_the_number_it_spells_as_in_the_cast(registry):
    penguins = registry.tasks["multiclass"]
    rows = penguins.frame.dropna().head(2)
    payload = records(rows, penguins.spec)
    for row in payload["dataframe_records"]:
        row["bill_length_mm"] = str(row["bill_length_mm"])

    with TestClient(create_app(penguins.name, penguins.version, registry.tracking_uri)) as client:
        answers = post(client, payload)

    assert_equals_registered(answers, penguins.expected(rows))


def test_concurrent_requests_sharing_a_model_call_get_exactly_their_own_answers(registry):
    penguins = registry.tasks["multiclass"]
    served = load_served_model(penguins.name, penguins.version, registry.tracking_uri)
    cast = model_input(penguins.frame, penguins.spec)
    slices = [cast.iloc[start : start + size] for start, size in zip(range(0, 60, 3), [1, 2, 3] * 7, strict=False)]
    calls: list[tuple[int, int]] = []
    batcher = MicroBatcher(max_rows=256, observe=lambda requests, rows: calls.append((requests, rows)))

    async def all_at_once():
        return await asyncio.gather(
            *(batcher.predict(served, {name: part[name].to_numpy() for name in part.columns}) for part in slices)
        )

    answers = asyncio.run(all_at_once())

    assert served.direct is not None and len(calls) == 1
    for part, outputs in zip(slices, answers, strict=False):
        expected = penguins.pyfunc.predict(part)
        assert list(outputs) == list(expected.columns)
        for name in expected.columns:
            assert outputs[name].tolist() == expected[name].tolist(), name


# ---------------------------------------------------------- log and metrics


def test_the_inference_log_holds_the_tasks_columns_and_its_labels_read_back_as_given(task, registry, tmp_path):
    rows = task.frame.head(8).reset_index(drop=True)
    log_root = tmp_path / "inference-log"
    app = create_app(task.name, task.version, registry.tracking_uri, inference_log=log_root, log_flush_seconds=3600)
    with TestClient(app) as client:
        answers = post(client, records(rows, task.spec), **{"X-Request-ID": "batch", "X-Request-Time": REQUEST_TIME})
    # leaving the client shut the app down, which flushed the log
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)

    logged = read_window(log_root, start, start + timedelta(days=1), with_labels=False)

    assert logged.columns.tolist() == [
        "request_id",
        "timestamp",
        "model_name",
        "model_version",
        *task.spec.feature_names,
        *task.outputs,
        "other_version",
        *(f"other_{name}" for name in task.outputs),
    ]
    assert logged["request_id"].tolist() == [f"batch-{index}" for index in range(len(rows))]
    # the features as the model received them: the cast's numbers and category text
    expected_features = model_input(rows, task.spec)
    column, _ = category_column(task)
    assert logged[column].tolist() == expected_features[column].tolist()
    assert all(type(value) is str for value in logged[column])
    pd.testing.assert_frame_equal(logged[task.spec.numeric_features], expected_features[task.spec.numeric_features])
    for name in task.outputs:
        assert logged[name].tolist() == [item[name] for item in answers], name
    if task.spec.task == "multiclass":
        assert logged["prediction"].dtype == object
        assert all(logged[f"probability_{name}"].dtype == np.float64 for name in PENGUIN_CLASSES)
        assert logged["probability"].dtype == np.float64
    else:
        assert logged["prediction"].dtype == np.float64

    # the user's raw labels: species names for the penguins, the measured value (a float) for diabetes
    given = rows[task.spec.target]
    write_labels(
        log_root,
        pd.DataFrame(
            {
                "request_id": logged["request_id"].iloc[:6],
                "label": given.iloc[:6],
                "label_timestamp": start + timedelta(days=3),
            }
        ),
        day=DAY,
    )
    labelled = read_window(log_root, start, start + timedelta(days=1))

    assert labelled["label"].dtype == (object if task.spec.task == "multiclass" else np.float64)
    assert labelled["label"].iloc[:6].tolist() == given.iloc[:6].tolist()
    assert labelled["label"].iloc[6:].isna().all()
    if task.spec.task == "multiclass":
        assert labelled["label"].iloc[0] in PENGUIN_CLASSES
    # what the drift check does with them: the task's target type
    np.testing.assert_array_equal(
        target_array(labelled["label"].iloc[:6], task.spec), target_array(given.iloc[:6], task.spec)
    )


def test_metrics_count_classes_and_observe_probabilities_by_task(client, task):
    before = metrics(client)
    answers = post(client, records(task.frame.head(30), task.spec))
    after = metrics(client)

    def added(name: str, labels: tuple = ()) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert added("model_requests_total", (("status", "200"),)) == 1
    counted = {
        labels: value - before.get((name, labels), 0)
        for (name, labels), value in after.items()
        if name == "model_predictions_total"
    }
    if task.spec.task == "multiclass":
        predicted = [item["prediction"] for item in answers]
        assert {dict(labels)["prediction"]: value for labels, value in counted.items() if value} == {
            name: predicted.count(name) for name in set(predicted)
        }
        assert added("model_prediction_probability_count") == 30
        assert added("model_prediction_probability_sum") == pytest.approx(sum(item["probability"] for item in answers))
        assert added("model_prediction_probability_bucket", (("le", "0.3"),)) == 0, "a class of 3 has P >= 1/3"
    else:
        assert not any(counted.values()), "a regression value is not a label to count"
        assert added("model_prediction_probability_count") == 0


# -------------------------------------------------------------- other pyfuncs


@pytest.fixture(scope="module")
def generic_clients(registry):
    with (
        TestClient(create_app("generic", registry.generic["multiclass"], registry.tracking_uri)) as multiclass,
        TestClient(create_app("generic", registry.generic["regression"], registry.tracking_uri)) as regression,
    ):
        yield {"multiclass": multiclass, "regression": regression}


def test_a_plain_multiclass_pyfunc_is_answered_column_for_column(generic_clients):
    sample = sample_frame(rows=6)
    expected = ThreeClassModel().predict(None, sample).drop(columns="debug")

    response = generic_clients["multiclass"].post("/invocations", json={"dataframe_records": sample.to_dict("records")})

    assert response.status_code == 200, response.text
    assert_equals_registered(response.json()["predictions"], expected)


def test_a_plain_regression_pyfunc_is_answered_with_its_values(generic_clients):
    sample = sample_frame(rows=4)
    expected = ValueModel().predict(None, sample)

    response = generic_clients["regression"].post("/invocations", json={"dataframe_records": sample.to_dict("records")})

    assert response.status_code == 200, response.text
    assert_equals_registered(response.json()["predictions"], expected)
    assert not any(
        name == "model_predictions_total" and value
        for (name, _), value in metrics(generic_clients["regression"]).items()
    )


@pytest.mark.parametrize(
    "kind, message", [("garbage", "not finite in [0, 1]"), ("label out of range", "not in {0, 1}")]
)
def test_a_binary_shaped_output_out_of_range_is_a_500_not_a_wrong_answer(registry, kind, message):
    with TestClient(create_app("generic", registry.generic[kind], registry.tracking_uri)) as client:
        response = client.post("/invocations", json={"dataframe_records": sample_frame(rows=3).to_dict("records")})

        assert response.status_code == 500
        assert response.json()["error_code"] == "MODEL_OUTPUT_INVALID"
        assert message in response.json()["message"]
        assert client.get("/health").status_code == 200
