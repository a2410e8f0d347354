"""The Models page's JSON against what MLflow and the drift report store record, for a demo-like history.

The history is made with the pipeline's own steps on a real SQLite MLflow and a DVC snapshot:
version 1 passes the gate and becomes champion, version 2 is approved and replaces it, a third
challenger is rejected by the gate, then a rollback brings version 1 back; three days of drift
results are stored, the last one drifted with retraining triggered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import mlflow
import pytest

from include.reporting.models_page import airflow_run_path, models_page
from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.unit.churn_frame import make_frame

WINDOW_START = date(2024, 3, 1)
DRIFT_DAYS = [date(2024, 4, 1) + timedelta(days=n) for n in range(3)]


def _report_url(day: str) -> str:
    return f"/reports/{day}"


class PromotingDeployer:
    """Serves nothing; promotes the way the real deployers end a successful deploy."""

    def deploy(self, model_name, version, sample, expected=None):
        from include.deployment import DeployResult, SmokeResult, promote
        from include.registry import CHAMPION, alias_version

        previous = promote(model_name, version, alias_version(model_name, CHAMPION))
        smoke = SmokeResult(version=version, url="http://127.0.0.1:1", rows=1, checks=("ok",), latency_ms=1.0)
        return DeployResult(version=version, previous_champion=previous, url=smoke.url, smoke=smoke)


def _drift_metrics(spec, champion: str, drifted: list[str], estimated: float) -> dict:
    from include.monitoring.records import ColumnDrift, DriftMetrics, ReportSample

    columns = {
        name: ColumnDrift(name, "wasserstein", 0.1, 0.3 if name in drifted else 0.02, 500, "calibrated")
        for name in spec.feature_names
    }
    return DriftMetrics(
        rows=500,
        labelled_rows=0,
        drift_share=len(drifted) / len(columns),
        drifted_columns=drifted,
        columns=columns,
        prediction_column="probability",
        prediction_drift=ColumnDrift("probability", "wasserstein", 0.1, 0.05),
        metric="roc_auc",
        score=None,
        reference_score=0.8,
        performance_drop=None,
        performance_note="not measured: 0 labelled row(s)",
        champion_version=champion,
        reference_data={"path": "p", "md5": "m", "rev": "r"},
        reference_rows=1000,
        reference_window_days=30,
        drift_share_threshold=0.15,
        performance_drop_threshold=0.05,
        report_sample=ReportSample(False, 1, 500, 500, 1000, 1000),
        estimated_roc_auc=estimated,
        estimated_roc_auc_band=[estimated - 0.02, estimated + 0.02],
        reference_roc_auc=0.8,
    ).to_dict()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from include import pipeline, tracking
    from include.data.spec import load_spec
    from include.data.versioning import DataRegistry
    from include.deployment.rollback import rollback
    from include.monitoring.drift_store import persist_results, record_decision
    from include.registry import set_version_tags
    from include.settings import Settings
    from include.training.train import TrainingConfig, train_and_log

    home = tmp_path_factory.mktemp("models-page") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        patch.setenv("MLOPS_PROFILE", "local")
        settings = Settings.from_env()
        spec = load_spec(settings.dataset_spec)
        tracking.configure(settings)
        data = DataRegistry(settings.data_registry, settings.dvc_remote)
        data_ref = data.snapshot(
            make_frame(spec, 1200, seed=5), spec.name, WINDOW_START, WINDOW_START + timedelta(days=30)
        )
        data_ref = data_ref.to_dict()
        frame = pipeline.load_snapshot(settings, data_ref)
        validation = {"success": True, "successful": 7, "evaluated": 7}
        metric, minimum, _ = pipeline.gate_thresholds(spec)

        def challenger(run_id: str, bar: float | None, max_regression: float = 1.0):
            patch.setenv("AIRFLOW_CTX_DAG_ID", "ml_training")
            patch.setenv("AIRFLOW_CTX_DAG_RUN_ID", run_id)
            config = TrainingConfig("sklearn_hgb", epochs=1, learning_rate=0.1, batch_size=256)
            tags = {"airflow.dag_id": "ml_training", "airflow.run_id": run_id}
            training = train_and_log(frame, spec, config, settings, tags).to_xcom()
            evaluation = pipeline.evaluate(settings, spec, data_ref, training, TEST_LATENCY_BUDGET_MS)
            decision = pipeline.gate(settings, evaluation, training, bar, max_regression, metric=metric)
            if not decision["passed"]:
                return None, training
            context = {"dag_id": "ml_training", "run_id": run_id, "params": {}}
            return pipeline.register(settings, training, data_ref, validation, decision, context), training

        first, _ = challenger("manual__first", minimum)
        PromotingDeployer().deploy(settings.model_name, first, None)
        second, _ = challenger("manual__second", minimum)
        # what the approval operator records when a person approves the deploy
        set_version_tags(settings.model_name, second, {"approval.decision": "approved", "approval.by": "alice"})
        PromotingDeployer().deploy(settings.model_name, second, None)
        rejected, rejected_training = challenger("manual__rejected", 0.999)
        assert rejected is None
        patch.setenv("AIRFLOW_CTX_DAG_ID", "ml_rollback")
        patch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__rollback")
        rollback(settings, PromotingDeployer(), settings.model_name, "previous", frame.head(1), None, "bob", "p95 up")

        html = home / "report.html"
        html.write_text("<html>drift report</html>")
        for day in DRIFT_DAYS:
            drifted = ["tenure_months", "plan"] if day == DRIFT_DAYS[-1] else []
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            metrics = _drift_metrics(spec, first, drifted, 0.78 if drifted else 0.8)
            persist_results(settings, start, start + timedelta(days=1), metrics, html)
            retrain = bool(drifted)
            decision = {"outcome": "retrain" if retrain else "ok", "reason": "drift share 0.20", "retrain": retrain}
            record_decision(settings, start, decision)
        yield settings, spec, {"first": first, "second": second, "rejected": rejected_training}
        forget = [name for name in ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID")]
        for name in forget:
            patch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def page(demo):
    settings, _, _ = demo
    return models_page(settings, report_url=_report_url)


def test_the_champion_timeline_shows_each_period_how_and_by_which_run(demo, page):
    settings, _, made = demo
    first, second = made["first"], made["second"]
    assert (page["champion"], page["previous_champion"]) == (first, second)

    timeline = page["timeline"]
    assert [(p["version"], p["how"]) for p in timeline] == [(first, "gate"), (second, "approval"), (first, "rollback")]
    gate, approval, back = timeline
    assert gate["to"] == approval["from"] and approval["to"] == back["from"] and back["to"] is None
    assert (approval["by"], back["by"], back["reason"]) == ("alice", "bob", "p95 up")
    assert gate["url"] == "/dags/ml_training/runs/manual__first"
    assert back["url"] == airflow_run_path("ml_rollback", "manual__rollback")
    # the same periods as the versions' own tags in MLflow
    client = mlflow.MlflowClient()
    for version in (first, second):
        recorded = client.get_model_version(settings.model_name, version).tags["champion.history"]
        entry = next(v for v in page["versions"] if v["version"] == version)
        assert entry["history"] == __import__("json").loads(recorded)


def test_each_version_shows_its_gate_checks_lineage_and_model_card(demo, page):
    settings, spec, made = demo
    client = mlflow.MlflowClient()
    versions = {entry["version"]: entry for entry in page["versions"]}
    assert set(versions) == {made["first"], made["second"]}
    for version, entry in versions.items():
        tags = client.get_model_version(settings.model_name, version).tags
        assert entry["gate"]["passed"] is True and entry["gate"]["reason"] == tags["gate.reason"]
        assert entry["gate"]["challenger_score"] == float(tags["gate.challenger_score"])
        assert entry["lineage"]["data_md5"] == tags["data.md5"] and entry["lineage"]["code_git_commit"]
        assert entry["model_card"]["model"]["version"] == version
        assert entry["airflow"]["url"] == f"/dags/ml_training/runs/{tags['airflow.run_id']}"
    second = versions[made["second"]]
    checks = {check["name"]: check for check in second["gate"]["checks"]}
    # compared with the first champion: overall and per slice, each with its value and threshold
    assert second["gate"]["compared_with"] == made["first"]
    assert checks["regression_overall"]["scope"] == "overall" and checks["regression_overall"]["threshold"] == 1.0
    slices = [check for check in checks.values() if check["scope"] == "slice"]
    assert {check["name"] for check in slices} == {f"slice plan={value}" for value in ("basic", "standard", "premium")}
    assert all(check["passed"] is True and check["threshold"] == 1.0 for check in slices)
    assert second["approval"]["by"] == "alice" and versions[made["first"]]["rollback"]["by"] == "bob"
    assert sorted(versions[made["first"]]["aliases"]) == ["champion"]


def test_the_rejected_challenger_is_listed_with_its_failed_checks(demo, page):
    _, _, made = demo
    [rejected] = page["rejections"]
    run = mlflow.MlflowClient().get_run(made["rejected"]["run_id"])
    assert rejected["run_id"] == run.info.run_id
    assert rejected["failed_checks"] == run.data.tags["gate.failed_checks"]
    assert rejected["gate"]["passed"] is False and rejected["gate"]["reason"] == run.data.tags["gate.reason"]
    floor = next(check for check in rejected["gate"]["checks"] if check["name"] == "min_roc_auc")
    assert (floor["threshold"], floor["passed"]) == (0.999, False)
    assert rejected["airflow"]["url"] == "/dags/ml_training/runs/manual__rejected"


def test_drift_per_day_with_column_scores_estimates_decisions_and_reports(demo, page):
    settings, spec, made = demo
    drift = page["drift"]
    assert drift["status"] == "known" and sorted(drift["columns"]) == sorted(spec.feature_names)
    assert [day["day"] for day in drift["days"]] == [day.isoformat() for day in DRIFT_DAYS]
    quiet, _, drifted = drift["days"]
    assert drifted["drifted_columns"] == ["tenure_months", "plan"] and drifted["crossed"] is True
    assert drifted["drift_share"] == pytest.approx(2 / len(spec.feature_names))
    assert drifted["columns"]["tenure_months"] == {
        "score": 0.3,
        "threshold": 0.1,
        "drifted": True,
        "method": "wasserstein",
    }
    assert drifted["estimated_roc_auc"] == 0.78 and drifted["estimated_roc_auc_band"] == [0.76, 0.8]
    assert (drifted["retrain_triggered"], quiet["retrain_triggered"]) == (True, False)
    assert drifted["decision"] == "retrain" and drifted["champion_version"] == made["first"]
    assert drifted["report_url"] == f"/reports/{DRIFT_DAYS[-1].isoformat()}"


def test_no_rollout_in_progress_then_one_read_from_the_candidate_alias(demo, page):
    from include.registry import set_version_tags

    settings, _, made = demo
    assert page["rollout"] is None and page["candidate"] is None
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(settings.model_name, "candidate", made["second"])
    set_version_tags(
        settings.model_name,
        made["second"],
        {"rollout.mode": "canary", "rollout.state": "running", "rollout.canary_share": "0.05"},
    )
    set_version_tags(settings.model_name, made["second"], {"rollout.steps": "[0.05, 0.25, 1.0]"})
    try:
        rollout = models_page(settings)["rollout"]
    finally:
        client.delete_registered_model_alias(settings.model_name, "candidate")
    assert rollout["candidate_version"] == made["second"] and rollout["mode"] == "canary"
    assert rollout["canary_share"] == "0.05" and rollout["steps"] == [0.05, 0.25, 1.0]
    assert rollout["numbers"] is None and rollout["decision"] is None


def test_an_empty_registry_gives_empty_sections(mlops_env):
    page = models_page(mlops_env)
    assert page["champion"] is None and page["timeline"] == [] and page["versions"] == []
    assert page["rejections"] == [] and page["drift"]["days"] == [] and page["rollout"] is None
