"""The traffic simulator against a real server process: real HTTP, a real inference log on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from include.data.partitions import to_parquet_bytes
from include.monitoring.inference_log import read_window
from include.settings import PROJECT_ROOT
from include.simulation.generate import DriftConfig, generate_day, land_days, partition_path
from include.simulation.traffic import DEFAULT_SEED, LABEL_DELAY, TrafficError, main, simulate
from scripts.local_stack import free_port
from tests.integration.monitoring_models import register_demo_model
from tests.integration.servers import kill_serving_processes

pytestmark = pytest.mark.integration

MODEL_NAME = "customer_churn"
FIRST_DAY = date(2026, 11, 10)
ROWS_PER_DAY = 200
BATCH_ROWS = 50


def utc(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def served_ok(url: str) -> float:
    return scrape(url).get(("model_requests_total", (("status", "200"),)), 0.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module, started by the local deployer on a registered demo-feature model."""
    from include.data.spec import load_spec
    from include.deployment.local import LocalServingDeployer
    from include.settings import Settings
    from include.tracking import configure
    from tests.unit.serving_models import forget_mlflow_uris

    home = tmp_path_factory.mktemp("traffic-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLOPS_PROFILE", "local")
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        patch.setenv("MLOPS_SERVING_PORT", str(free_port()))
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        patch.delenv("MLOPS_INFERENCE_LOG", raising=False)
        settings = Settings.from_env()
        configure(settings)
        spec = load_spec(settings.dataset_spec)
        example = generate_day(spec, FIRST_DAY, 5, seed=1)[spec.feature_names]
        version = register_demo_model(MODEL_NAME, example)
        deployer = LocalServingDeployer(settings, start_timeout=60)
        try:
            status = deployer.start(version, MODEL_NAME)
            yield settings, spec, status.url, version
        finally:
            try:
                deployer.stop()
            finally:
                leftovers = kill_serving_processes()
                forget_mlflow_uris()
            assert not leftovers, f"servers left running after the tests: {leftovers}"


def test_simulated_days_are_logged_labelled_and_landed(served):
    settings, spec, url, version = served
    second_day = FIRST_DAY + timedelta(days=1)
    drift = DriftConfig("covariate", second_day, 1.0)
    requests_before = served_ok(url)

    summaries = simulate(settings, spec, url, FIRST_DAY, 2, ROWS_PER_DAY, drift=drift, batch_rows=BATCH_ROWS)

    assert [(s.day, s.rows, s.requests, s.drifted) for s in summaries] == [
        (FIRST_DAY, ROWS_PER_DAY, 4, False),
        (second_day, ROWS_PER_DAY, 4, True),
    ]
    logged = read_window(settings.inference_log, utc(FIRST_DAY), utc(FIRST_DAY + timedelta(days=2)))
    assert len(logged) == 2 * ROWS_PER_DAY
    assert logged["request_id"].is_unique
    assert (logged["model_version"] == version).all() and (logged["model_name"] == MODEL_NAME).all()
    partitions = sorted(path.name for path in (settings.path("inference-log") / "predictions").iterdir())
    assert partitions == ["date=2026-11-10", "date=2026-11-11"]

    for summary in summaries:
        sent = generate_day(spec, summary.day, ROWS_PER_DAY, DEFAULT_SEED, drift)
        day_rows = read_window(settings.inference_log, utc(summary.day), utc(summary.day + timedelta(days=1)))
        assert len(day_rows) == ROWS_PER_DAY
        # each request is stamped with its first row's event time, and requests go out in time order
        batch_starts = sent[spec.timestamp_column].iloc[::BATCH_ROWS].repeat(BATCH_ROWS).to_numpy()
        np.testing.assert_array_equal(day_rows["timestamp"].to_numpy(), batch_starts)
        for name in spec.numeric_features:
            np.testing.assert_array_equal(day_rows[name].to_numpy(), sent[name].to_numpy(), err_msg=name)
        for name in spec.categorical_features:
            assert day_rows[name].tolist() == sent[name].tolist(), name
        # every prediction got its label, and it is the customer's true outcome
        assert day_rows["label"].notna().all()
        assert day_rows["label"].astype(int).tolist() == sent[spec.target].tolist()
        assert summary.mean_probability == pytest.approx(day_rows["probability"].mean(), abs=1e-12)
        assert len(summary.label_files) == 1 and f"date={summary.day}" in summary.label_files[0]
        # the labelled rows are in the training landing zone, exactly as generated
        landed = partition_path(spec, summary.day)
        assert summary.landed == str(landed) and landed.is_file()
        assert landed.read_bytes() == to_parquet_bytes(sent)

    labels = pd.read_parquet(summaries[0].label_files[0])
    assert len(labels) == ROWS_PER_DAY and labels["request_id"].isin(logged["request_id"]).all()
    sent_first = generate_day(spec, FIRST_DAY, ROWS_PER_DAY, DEFAULT_SEED, drift)
    assert (labels["label_timestamp"] == sent_first[spec.timestamp_column] + LABEL_DELAY).all()
    # the drift shows in the logged features: covariate drift cuts usage and raises support calls
    first, second = (logged[logged["timestamp"] < utc(second_day)], logged[logged["timestamp"] >= utc(second_day)])
    assert second["usage_hours_30d"].mean() < 0.85 * first["usage_hours_30d"].mean()
    assert second["support_calls_30d"].mean() > first["support_calls_30d"].mean()
    assert served_ok(url) - requests_before == 8
    assert scrape(url)[("inference_log_write_errors_total", ())] == 0


def test_the_command_line_prints_a_line_per_day(served, capsys, monkeypatch):
    settings, spec, url, _ = served
    day = date(2026, 11, 20)
    monkeypatch.setenv("MLOPS_HOME", str(settings.home))  # main() reads its settings from the environment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)

    code = main(
        [
            "--url",
            url,
            "--start",
            day.isoformat(),
            "--days",
            "1",
            "--rows-per-day",
            "60",
            "--batch-rows",
            "25",
            "--no-land",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[0].split()[:5] == ["2026-11-20", "60", "rows", "3", "requests"]
    assert "normal" in out.splitlines()[0]
    assert len(read_window(settings.inference_log, utc(day), utc(day + timedelta(days=1)))) == 60
    assert not partition_path(spec, day).exists()


def test_nothing_is_sent_when_the_landing_zone_holds_other_data_for_a_day(served):
    settings, spec, url, _ = served
    day = date(2026, 11, 25)
    land_days(spec, day, 1, 40, seed=7)  # the training history already covers this day
    requests_before = served_ok(url)

    with pytest.raises(TrafficError, match="already holds other data"):
        simulate(settings, spec, url, day - timedelta(days=1), 2, 40)

    assert served_ok(url) == requests_before
    assert read_window(settings.inference_log, utc(day - timedelta(days=1)), utc(day + timedelta(days=1))).empty


def test_an_unreachable_server_is_a_clear_error(served):
    settings, spec, _, _ = served

    with pytest.raises(TrafficError, match="is the model server running"):
        simulate(
            settings,
            spec,
            f"http://127.0.0.1:{free_port()}",
            date(2026, 12, 1),
            1,
            10,
            batch_rows=5,
            land_to_training_data=False,
        )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"url": "127.0.0.1:5080"}, "base URL"),
        ({"days": 0}, "days"),
        ({"batch_rows": 0}, "batch_rows"),
        ({"rows_per_day": True}, "rows_per_day"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(served, arguments, message):
    settings, spec, url, _ = served
    call = {"url": url, "start": date(2026, 12, 5), "days": 1, "rows_per_day": 10, "batch_rows": 5, **arguments}

    with pytest.raises(ValueError, match=message):
        simulate(settings, spec, call.pop("url"), call.pop("start"), call.pop("days"), call.pop("rows_per_day"), **call)


def test_a_stopped_server_has_written_every_row_it_answered(served, tmp_path):
    """SIGTERM: uvicorn shuts down, the app closes its inference log, and the last rows reach the disk."""
    settings, spec, _, version = served
    port, root = free_port(), tmp_path / "inference-log"
    env = dict(
        os.environ,
        MLOPS_HOME=str(settings.home),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        MLFLOW_REGISTRY_URI=settings.tracking_uri,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    command = [
        sys.executable,
        "-m",
        "include.serving",
        "--model-name",
        MODEL_NAME,
        "--version",
        version,
        "--port",
        str(port),
        "--inference-log",
        str(root),
        "--inference-log-flush-seconds",
        "3600",
    ]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.2)
        rows = generate_day(spec, FIRST_DAY, 7, DEFAULT_SEED)[spec.feature_names]
        answer = requests.post(
            f"{url}/invocations",
            timeout=10,
            headers={"X-Request-Time": "2026-11-10T12:00:00Z"},
            json={"dataframe_split": {"columns": spec.feature_names, "data": rows.astype(object).to_numpy().tolist()}},
        )
        assert answer.status_code == 200, answer.text
        assert scrape(url)[("inference_log_rows_pending", ())] == 7
        assert not list(root.rglob("*.parquet"))

        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)

    # uvicorn re-raises the signal once it has shut down cleanly
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    logged = read_window(root, utc(FIRST_DAY), utc(FIRST_DAY + timedelta(days=1)))
    assert logged["request_id"].tolist() == answer.json()["request_ids"]
    assert "7 rows written" in output


def test_live_traffic_is_stamped_when_sent_routed_by_customer_id_and_labelled(served):
    from include.simulation.live import send_live

    settings, spec, url, version = served
    before = datetime.now(UTC)
    batch = send_live(settings, spec, url, 120, seed=5, batch_rows=BATCH_ROWS)
    after = datetime.now(UTC)
    assert (batch.rows, batch.requests) == (120, 3)
    assert before <= batch.sent_at <= after
    logged = read_window(settings.inference_log, before - timedelta(seconds=1), after + timedelta(seconds=1))
    assert len(logged) == 120 and (logged["model_version"] == version).all()
    # every row is stamped with the time it was sent, not a simulated day's time
    assert (logged["timestamp"] == pd.Timestamp(batch.sent_at)).all()
    # and labelled with the generated customers' true outcomes
    expected = generate_day(spec, batch.sent_at.date(), 120, 5)[spec.target].to_numpy()
    assert logged["label"].notna().all()
    assert sorted(logged["label"].astype(int)) == sorted(expected.astype(int))
    # nothing is landed in the training data
    assert not partition_path(spec, batch.sent_at.date()).exists()


def test_live_traffic_refuses_bad_sizes(served):
    from include.simulation.live import send_live

    settings, spec, url, _ = served
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        send_live(settings, spec, url, 0, seed=1)
