"""Case 7: the serving process dies during a deploy, before the smoke test completed.

Fault: the deploy step swaps the running model server to a new version whose first served
prediction kills the server process (SIGKILL), i.e. in the middle of the smoke test. The
``champion`` alias only ever moves after a passed smoke test, so it has not moved yet.
Expected: the deploy fails, saying at which stage and what is served now.
State checked: ``champion`` and ``previous_champion`` are unchanged, and a new server
process (the old one is dead) serves the champion again and answers requests.
"""

from __future__ import annotations

import pytest
import requests

from tests.reliability.conftest import xcom

pytestmark = pytest.mark.reliability


def test_server_death_during_the_smoke_test_restores_the_champion(stack, champion_run):
    from include import pipeline, registry
    from include.data.split import holdout_split
    from include.deployment import DeployFailed
    from include.deployment.local import LocalServingDeployer
    from include.tracking import TRAINING_EXPERIMENT, ensure_experiment
    from include.training.model import as_model_input
    from tests.reliability.fault_models import DiesWhenServedModel, log_model

    settings, spec = stack.settings, stack.spec
    data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
    champion = stack.alias(registry.CHAMPION)
    aliases_before = stack.aliases()
    deployer = LocalServingDeployer(settings)
    served_before = deployer.status()
    assert served_before is not None and served_before.running and served_before.version == champion

    # a version that passed its gate against this very champion (no re-gate needed)
    _, holdout = holdout_split(pipeline.load_snapshot(settings, data_ref), spec)
    run_id, model_uri = log_model(
        DiesWhenServedModel(noise=0.0),
        as_model_input(holdout.head(5), spec),
        ensure_experiment(settings, TRAINING_EXPERIMENT),
    )
    version = registry.register_challenger(
        settings.model_name,
        model_uri,
        run_id,
        {
            "gate.passed": "true",
            "gate.metric": "roc_auc",
            "gate.min": "0.5",
            "gate.max_regression": "0.5",
            "gate.latency_budget_ms": "500",
            pipeline.GATED_AGAINST_TAG: champion,
        },
    )

    with pytest.raises(DeployFailed) as failure:
        pipeline.deploy(settings, spec, data_ref, version)

    message = str(failure.value)
    assert "while running the smoke test" in message, message
    assert f"version {champion} (the champion) is served" in message, message
    assert stack.aliases() == {**aliases_before, "challenger": version}
    served_now = deployer.status()
    assert served_now is not None and served_now.running and served_now.version == champion
    assert served_now.pid != served_before.pid, "the dead server was not replaced"
    health = requests.get(f"{served_now.url}/health", timeout=10).json()
    assert str(health["model_version"]) == champion
    rows = holdout[spec.feature_names].head(2)
    answer = requests.post(
        f"{served_now.url}/invocations", timeout=30, json={"dataframe_records": rows.to_dict(orient="records")}
    )
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
