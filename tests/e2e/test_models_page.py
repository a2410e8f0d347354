"""The Models page in the real Airflow UI: reached from the navigation, it shows what MLflow records.

Runs against the stack of tests/e2e/conftest.py after its first training run (a champion that
passed the gate); screenshots go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TRAINING_DAG_ID
from tests.e2e.test_ui import Page, browser, logged_in, ui  # noqa: F401 (fixtures used by name)

pytestmark = [pytest.mark.e2e]


def test_the_models_page_from_the_navigation_shows_the_champion_and_how_it_got_there(logged_in: Page, first_champion):
    import mlflow

    from include import tracking
    from include.registry import CHAMPION, alias_version, champion_history, version_tags

    page, e2e = logged_in, logged_in.e2e
    assert first_champion["run"]["state"] == "success", first_champion["states"]
    tracking.configure(e2e.settings)
    name = e2e.settings.model_name
    champion = alias_version(name, CHAMPION)
    [period] = champion_history(version_tags(name, champion))
    run_id = first_champion["run"]["dag_run_id"]
    assert (period["how"], period["dag_id"], period["run_id"]) == ("gate", TRAINING_DAG_ID, run_id)

    page.open("/dags")
    link = page.wait_for(
        lambda: next(
            a for a in page.driver.find_elements("css selector", "a[href*='/plugin/models']") if a.is_displayed()
        ),
        "the Models entry of the navigation",
    )
    page.click_element(link, "the Models entry")
    frame = page.wait_for(lambda: page.driver.find_element("css selector", "iframe"), "the Models page's frame")
    page.driver.switch_to.frame(frame)
    try:
        page.wait_for_text("Champion timeline", f"Champion v{champion}", "Drift per day", "Versions")
        timeline = page.driver.find_element("id", "timeline").text
        assert "gate" in timeline and run_id in timeline
        versions = page.driver.find_element("id", "versions").text
        tags = mlflow.MlflowClient().get_model_version(name, champion).tags
        page.driver.find_element("id", f"version-{champion}").click()
        page.wait_for_text(tags["data.md5"], tags["gate.reason"][:40])
        assert f"v{champion}" in versions
    finally:
        page.shot("20-models-page")
        page.driver.switch_to.default_content()
