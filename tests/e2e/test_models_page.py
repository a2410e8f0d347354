"""The Models page in the real Airflow UI after a demo-like history, section by section against MLflow.

The history is made by the stack's own DAG runs, triggered through the REST API:

1. v1 passes the gate (``first_champion``, shared with test_rest_api.py);
2. traffic served by v1 drifts, and the ``drift_monitor`` backfill judges each day and triggers
   one retraining (``drift_backfill``, shared with test_rest_api.py);
3. a second champion: that retraining when its gate passed it, else a run with the usual params;
4. a challenger the gate rejects (``gate_min`` no model reaches);
5. ``ml_rollback`` back to the previous champion, v1.

Each section of the page (reached from the UI's navigation, in its frame) is then read in headless
Chromium and compared with what ``MlflowClient`` and the drift report store hold. Screenshots go
to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from mlops_airflow.models_page import URL_PREFIX, page_url
from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.e2e.conftest import (
    HISTORY_DAYS,
    HISTORY_END,
    NEEDS_CHROMIUM,
    ROLLBACK_DAG_ID,
    TRAINING_DAG_ID,
    Page,
)

pytestmark = [pytest.mark.e2e, NEEDS_CHROMIUM]

REJECTION_BAR = 0.99
ROLLBACK_REASON = "e2e: the retrained champion rolled back"


def _training_conf(reason: str, **gate) -> dict:
    """The first champion's params (the landed history, few epochs), with ``gate`` overriding the gate's."""
    return {
        "epochs": 3,
        "training_window_days": HISTORY_DAYS,
        "training_window_end": HISTORY_END.isoformat(),
        "gate_min": 0.6,
        "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
        "reason": reason,
        **gate,
    }


def _run(e2e, dag_id: str, conf: dict) -> dict:
    """One run of ``dag_id`` triggered through the REST API, followed to a successful end."""
    run_id = e2e.client.trigger(dag_id, conf)["dag_run_id"]
    finished = e2e.wait_for_run(dag_id, run_id)
    assert finished["state"] == "success", e2e.diagnostics(dag_id, run_id)
    return finished


@pytest.fixture(scope="module")
def history(e2e, first_champion, drift_backfill) -> dict:
    """Two champions, drifted days, a rejection and a rollback; returns the versions and the runs."""
    from include import tracking
    from include.registry import CHAMPION, alias_version

    assert first_champion["run"]["state"] == "success", first_champion["states"]
    tracking.configure(e2e.settings)
    name = e2e.settings.model_name
    first = str(e2e.xcom(TRAINING_DAG_ID, first_champion["run"]["dag_run_id"], "register"))
    [retraining] = drift_backfill["retraining"]
    assert retraining["state"] == "success", e2e.diagnostics(TRAINING_DAG_ID, retraining["dag_run_id"])
    second_run = retraining
    if alias_version(name, CHAMPION) == first:
        # the retraining's gate rejected it (an outcome the drift test allows): the next champion
        # comes from a run that is only asked not to fall below the bar
        second_run = _run(e2e, TRAINING_DAG_ID, _training_conf("e2e: retrained", max_regression=1.0))
    second = alias_version(name, CHAMPION)
    assert second not in (None, first), f"no second champion after {second_run['dag_run_id']}"

    rejected = _run(e2e, TRAINING_DAG_ID, _training_conf("e2e: a bar no model reaches", gate_min=REJECTION_BAR))
    states = e2e.task_states(TRAINING_DAG_ID, rejected["dag_run_id"])
    assert states["register"] == "skipped" and states["deploy"] == "skipped", states

    e2e.unpause(ROLLBACK_DAG_ID)
    rollback = _run(e2e, ROLLBACK_DAG_ID, {"target": "previous", "reason": ROLLBACK_REASON})
    assert alias_version(name, CHAMPION) == first
    return {
        "first": first,
        "second": second,
        "second_run": second_run["dag_run_id"],
        "rejected_run": rejected["dag_run_id"],
        "rollback_run": rollback,
    }


@pytest.fixture(scope="module")
def mlflow_client(e2e):
    import mlflow

    from include import tracking

    tracking.configure(e2e.settings)
    return mlflow.MlflowClient()


# ---------------------------------------------------------------------- reading the page
def _text(element) -> str:
    """An element's text, shown or not (a closed <details> hides its content from ``.text``)."""
    return " ".join((element.get_attribute("textContent") or "").split())


def _cells(table) -> list[list]:
    """The data rows of ``table`` (a <table> element): each a list of its <td> elements."""
    return [row.find_elements("tag name", "td") for row in table.find_elements("tag name", "tr")[1:]]


def _rows(scope, css: str) -> list[list]:
    return _cells(scope.find_element("css selector", css))


def _table_after(scope, heading: str) -> dict[str, str]:
    """The field/value table that follows the <h4> ``heading`` within ``scope``, as a dict."""
    table = scope.find_element("xpath", f".//h4[normalize-space(.)='{heading}']/following-sibling::table[1]")
    return {_text(key): _text(value) for key, value in _cells(table)}


def _checks_table(scope) -> list[list[str]]:
    """The gate's checks within ``scope``: [check, scope, value, threshold, result, detail] texts."""
    table = scope.find_element("xpath", ".//table[.//th[1]='check']")
    return [[_text(cell) for cell in row] for row in _cells(table)]


def _shown(value) -> str:
    """A value as the page prints it: floats to 4 places, nothing as a dash, whitespace collapsed."""
    if value is None or value == "":
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else " ".join(str(value).split())


def _figure(value) -> float | None:
    """A check's value or threshold as the card records it: a number, or None / "none" when it has none."""
    return None if value in (None, "none") else float(value)


def _run_url(page: Page, dag_id: str, run_id: str) -> str:
    return f"{page.e2e.stack.api_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _enter(page: Page, through_navigation: bool = False) -> None:
    """The Models page in the UI's frame, the driver switched into that frame."""
    page.driver.switch_to.default_content()
    if through_navigation:
        page.open("/dags")
        link = page.wait_for(
            lambda: next(
                a for a in page.driver.find_elements("css selector", "a[href*='/plugin/models']") if a.is_displayed()
            ),
            "the Models entry of the navigation",
        )
        page.click_element(link, "the Models entry")
    else:
        page.driver.get(page_url(page.e2e.stack.api_url))
    frame = page.wait_for(lambda: page.driver.find_element("css selector", "iframe"), "the Models page's frame")
    page.driver.switch_to.frame(frame)
    page.wait_for_text("Champion timeline", "Drift per day", "Rejected challengers")


def _shot(page: Page, anchor: str, name: str) -> Path:
    element = page.driver.find_element("id", anchor)
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    return page.shot(name)


@pytest.fixture
def models_page(logged_in: Page, history):
    """The logged-in browser once the history is made; left outside any frame afterwards."""
    yield logged_in
    logged_in.driver.switch_to.default_content()


# ---------------------------------------------------------------------- the sections
def test_the_champion_timeline_shows_every_period_with_how_by_whom_and_its_run(models_page, history, mlflow_client):
    from include.registry import champion_history

    page, name = models_page, models_page.e2e.settings.model_name
    first, second = history["first"], history["second"]
    versions = [v.version for v in mlflow_client.search_model_versions(f"name='{name}'")]
    periods = sorted(
        (
            {"version": str(version), **period}
            for version in versions
            for period in champion_history(mlflow_client.get_model_version(name, version).tags)
        ),
        key=lambda period: period["from"],
    )
    assert [(p["version"], p["how"]) for p in periods] == [(first, "gate"), (second, "gate"), (first, "rollback")]
    gate, retrained, rolled_back = periods
    assert gate["to"] == retrained["from"] and retrained["to"] == rolled_back["from"] and rolled_back["to"] is None
    assert (retrained["dag_id"], retrained["run_id"]) == (TRAINING_DAG_ID, history["second_run"])
    rollback_run = history["rollback_run"]
    assert (rolled_back["dag_id"], rolled_back["run_id"]) == (ROLLBACK_DAG_ID, rollback_run["dag_run_id"])
    assert rolled_back["reason"] == ROLLBACK_REASON
    assert rolled_back["by"] == (rollback_run.get("triggering_user_name") or "airflow")
    aliases = mlflow_client.get_registered_model(name).aliases

    _enter(page, through_navigation=True)
    try:
        assert _text(page.driver.find_element("id", "champion")) == f"v{aliases['champion']}" == f"v{first}"
        assert f"previous champion v{aliases['previous_champion']}" in page.text()
        rows = _rows(page.driver, "#timeline")
        assert len(rows) == len(periods), [[_text(cell) for cell in row] for row in rows]
        for row, period in zip(rows, periods, strict=True):
            version, start, end, how, by, why, run = row
            assert _text(version) == f"v{period['version']}" and _text(start) == period["from"]
            assert _text(end) == (period["to"] or "now (champion)")
            assert (_text(how), _text(by), _text(why)) == (period["how"], period["by"], _shown(period["reason"]))
            link = run.find_element("tag name", "a")
            assert _text(link) == f"{period['dag_id']} / {period['run_id']}"
            assert link.get_attribute("href") == _run_url(page, period["dag_id"], period["run_id"])
            assert link.get_attribute("target") == "_top"  # Airflow's own page, in the whole window
        # one bar per period in the chart, on one line per version
        bars = page.driver.find_elements("css selector", "#timeline-chart rect")
        assert len(bars) == len(periods)
        _shot(page, "champion-timeline", "20-models-page-timeline")

        # the rollback's run link leads to that run in the Airflow UI
        link = rows[-1][-1].find_element("tag name", "a")
        link_url = link.get_attribute("href")
        page.click_element(link, "the rollback's run link")
        page.driver.switch_to.default_content()
        page.wait_for_text(rollback_run["dag_run_id"], "rollback")
        assert unquote(page.driver.current_url).startswith(unquote(link_url))
        page.shot("21-models-page-rollback-run")
    finally:
        page.driver.switch_to.default_content()


def test_each_version_shows_its_gate_checks_lineage_and_model_card(models_page, history, mlflow_client):
    import mlflow

    from include.reporting.model_card import CARD_FOLDER, CARD_JSON
    from include.reporting.models_page import LINEAGE_TAGS

    page, name = models_page, models_page.e2e.settings.model_name
    registered = sorted(mlflow_client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    assert {str(v.version) for v in registered} == {history["first"], history["second"]}
    aliases: dict[str, list[str]] = {}
    for alias, version in mlflow_client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)

    _enter(page)
    shown = [el.get_attribute("id") for el in page.driver.find_elements("css selector", "details.version")]
    assert shown == [f"version-{v.version}" for v in registered]
    for version in registered:
        number, tags = str(version.version), version.tags
        details = page.driver.find_element("id", f"version-{number}")
        page.click_element(details.find_element("tag name", "summary"), f"v{number}'s summary")
        summary = _text(details.find_element("tag name", "summary"))
        assert summary.startswith(f"v{number} ") and all(f"[{a}]" in summary for a in aliases.get(number, []))
        assert f"gate {'pass' if tags['gate.passed'] == 'true' else 'FAIL'}" in summary
        registered_by = details.find_element("css selector", "p a")
        assert registered_by.get_attribute("href") == _run_url(page, tags["airflow.dag_id"], tags["airflow.run_id"])
        assert version.run_id in _text(details)

        # the gate: every check of the decision logged with the model card, against its threshold
        card = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{CARD_FOLDER}/{CARD_JSON}")
        assert card["model"]["version"] == number
        expected = [
            [
                check["name"],
                _shown(_figure(check.get("value"))),
                _shown(_figure(check.get("threshold"))),
                "pass" if check["passed"] else "FAIL",
            ]
            for check in card["gate"]["checks"]
        ]
        checks = _checks_table(details)
        assert [[row[0], row[2], row[3], row[4]] for row in checks] == expected
        assert _shown(tags["gate.reason"]) in _text(details)
        if tags.get("gate.champion_version") not in (None, "none"):
            # challenged a champion: the regression checks, overall and per slice
            scopes = {row[1] for row in checks}
            assert {"overall", "slice"} <= scopes, checks

        # the lineage, as tagged on the version
        lineage = _table_after(details, "Lineage")
        assert lineage == {field: _shown(tags.get(key)) for field, key in LINEAGE_TAGS.items()}
        assert lineage["data_md5"] == tags["data.md5"] and lineage["data_rev"] == tags["data.rev"]

        # the model card: intended use and held-out scores
        text = _text(details)
        assert f"intended use: {_shown(card['intended_use']['description'])}" in text
        scores = {k: v for k, v in card["evaluation"]["overall"].items() if not isinstance(v, dict)}
        assert scores and all(f"{metric} {_shown(value)}" in text for metric, value in scores.items())
    first = page.driver.find_element("id", f"version-{history['first']}")
    rollback_tags = mlflow_client.get_model_version(name, history["first"]).tags
    rollback = _table_after(first, "Rollback")
    assert rollback == {
        key.removeprefix("rollback."): v for key, v in rollback_tags.items() if key.startswith("rollback.")
    }
    assert rollback["reason"] == ROLLBACK_REASON and rollback["airflow_run_id"] == history["rollback_run"]["dag_run_id"]
    _shot(page, f"version-{history['second']}", "22-models-page-versions")


def test_the_rejected_challenger_shows_the_check_it_failed(models_page, history, mlflow_client):
    from include.tracking import TRAINING_EXPERIMENT

    page = models_page
    experiment = mlflow_client.get_experiment_by_name(TRAINING_EXPERIMENT)
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`gate.passed` = 'false'",
        order_by=["attributes.start_time DESC"],
    )
    [rejected] = [run for run in runs if run.data.tags.get("airflow.run_id") == history["rejected_run"]]

    _enter(page)
    shown = page.driver.find_elements("css selector", "details.rejection")
    assert len(shown) == len(runs)
    [details] = [d for d in shown if rejected.info.run_id in _text(d)]
    page.click_element(details.find_element("tag name", "summary"), "the rejection's summary")
    assert f"rejected: {rejected.data.tags['gate.failed_checks']}" in _text(details)
    link = details.find_element("css selector", "p a")
    assert link.get_attribute("href") == _run_url(page, TRAINING_DAG_ID, history["rejected_run"])
    floor = next(row for row in _checks_table(details) if row[3] == _shown(REJECTION_BAR))
    assert floor[4] == "FAIL" and floor[0] in rejected.data.tags["gate.failed_checks"]
    assert _shown(rejected.data.tags["gate.reason"]) in _text(details)
    _shot(page, "rejections", "23-models-page-rejections")


def test_drift_per_day_shows_each_judged_day_and_links_its_report(models_page, history, mlflow_client, drift_backfill):
    from include.monitoring.drift_store import DRIFT_EXPERIMENT

    page, settings = models_page, models_page.e2e.settings
    experiment = mlflow_client.get_experiment_by_name(DRIFT_EXPERIMENT)
    runs = {}
    for run in mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_name = '{settings.model_name}'",
        order_by=["attributes.start_time DESC"],
    ):
        runs.setdefault(run.data.tags["window_start"][:10], run)
    stored = {folder.name: folder for folder in (Path(settings.reports) / "drift").iterdir()}
    days = sorted(set(runs) | set(stored))
    assert set(drift_backfill["decisions"]) <= set(days)

    _enter(page)
    rows = _rows(page.driver, "#drift-days")
    assert [_text(row[0]) for row in rows] == days
    triggered = []
    for row in rows:
        day = _text(row[0])
        if day not in stored:  # judged without a report (a window with no traffic): its decision only
            assert runs[day].data.tags["decision"] in _text(row[7]) and _text(row[8]) == "—"
            continue
        metrics = json.loads((stored[day] / "metrics.json").read_text())
        tags = runs[day].data.tags if day in runs else {}
        assert _text(row[1]) == f"v{metrics['champion_version']}" == f"v{history['first']}"
        assert _text(row[2]) == str(metrics["rows"])
        assert _text(row[3]) == f"{metrics['drift_share']:.2f} / {metrics['drift_share_threshold']:.2f}"
        assert _text(row[4]) == (", ".join(metrics["drifted_columns"]) or "none")
        assert tags.get("decision", "—") in _text(row[7])
        if tags.get("retrain_triggered") == "true":
            triggered.append(day)
            assert "retrain triggered" in _text(row[7])
        link = row[8].find_element("tag name", "a")
        assert link.get_attribute("href") == f"{page.e2e.stack.api_url}{URL_PREFIX}/reports/{day}"
        # in the frame: the UI's sandbox lets no link open a tab
        assert link.get_attribute("target") in (None, "")
    fired = [day for day, decision in drift_backfill["decisions"].items() if decision["outcome"] == "retrain"]
    assert triggered == fired and len(triggered) == 1
    assert sum(1 for row in rows if _text(row[4]) != "none") >= 2, "the drifted days show their columns"
    assert len(page.driver.find_elements("css selector", "#drift-chart rect")) >= len(stored)
    _shot(page, "drift", "24-models-page-drift")

    # the link opens that day's stored Evidently report in the frame
    day = max(stored)
    page.click_element(rows[days.index(day)][8].find_element("tag name", "a"), f"the report link of {day}")
    page.wait_for(
        lambda: page.driver.execute_script("return location.pathname") == f"{URL_PREFIX}/reports/{day}",
        "the report in the frame",
    )
    assert "evidently" in page.driver.page_source.lower()
    assert "evidently" in (stored[day] / "report.html").read_text().lower()
    page.shot("25-models-page-drift-report")


def test_the_rollout_section_says_none_is_in_progress_as_mlflow_has_no_candidate(models_page, mlflow_client):
    page = models_page
    assert "candidate" not in mlflow_client.get_registered_model(page.e2e.settings.model_name).aliases
    _enter(page)
    section = page.driver.find_element("xpath", "//h2[@id='rollout']/following-sibling::*[1]")
    assert _text(section) == "No rollout in progress."
    assert "candidate none" in page.text()
    page.shot("26-models-page")
    # the page on its own, as the README shows it
    page.driver.switch_to.default_content()
    page.driver.get(f"{page.e2e.stack.api_url}{URL_PREFIX}/")
    page.wait_for_text("Champion timeline")
    page.driver.set_window_size(1300, 1400)
    try:
        page.shot("27-models-page-alone")
    finally:
        page.driver.set_window_size(1600, 1000)
