"""The Airflow UI in headless Chromium: login, the DAGs and their docs, the trigger form, a run from it.

Drives Debian's ``chromium`` through ``chromedriver`` (Selenium, the ``logged_in`` fixture of
tests/e2e/conftest.py) against its real api-server. Screenshots of each step go to
``test-artifacts/e2e/`` (git-ignored). ``make test`` installs Chromium via apt.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NEEDS_CHROMIUM, RUN_TIMEOUT, TRAINING_DAG_ID, Page

pytestmark = [pytest.mark.e2e, NEEDS_CHROMIUM]


def test_login_with_the_generated_admin_password(logged_in: Page):
    logged_in.wait_for_text("Dags")
    logged_in.shot("02-home")


def test_both_dags_listed_with_their_docs(logged_in: Page):
    ui = logged_in
    ui.open("/dags")
    ui.wait_for_text(TRAINING_DAG_ID, "drift_monitor")
    ui.shot("03-dag-list")
    docs = {
        TRAINING_DAG_ID: "Trains, evaluates and deploys the model of the dataset spec",
        "drift_monitor": "checks the previous day's served traffic for drift",
    }
    for number, (dag_id, sentence) in enumerate(docs.items(), start=4):
        ui.open(f"/dags/{dag_id}")
        ui.click("Dag Docs")
        ui.wait_for_text(sentence)
        ui.shot(f"0{number}-{dag_id}-docs")
        ui.driver.find_element("tag name", "body").send_keys("\ue00c")  # Escape closes the dialog


def test_trigger_form_shows_the_params_and_a_run_from_it_succeeds(logged_in: Page):
    ui, e2e = logged_in, logged_in.e2e
    before = {run["dag_run_id"] for run in e2e.runs(TRAINING_DAG_ID)}
    ui.open(f"/dags/{TRAINING_DAG_ID}")
    ui.click("Trigger")
    # the modal, not the (hidden) popovers that share its role
    dialog = ui.wait_for(
        lambda: next(
            d
            for d in ui.driver.find_elements("css selector", "[role=dialog]")
            if d.get_attribute("data-scope") == "dialog" and d.is_displayed()
        ),
        "the trigger dialog",
    )
    # the params sit in one collapsible section each (the DAG's `section`s), one open at a time:
    # each shows its params with their titles and descriptions
    sections = {
        "Model": ("Model type", "torch_mlp: a PyTorch MLP", "epochs", "Passes over the training data"),
        "Resources": ("gpus", "GPUs requested by the training pod"),
        "Data": ("Training window (days)", "Number of daily partitions the model learns from."),
        "Gate": (
            "Gate metric",
            "Gate bar",
            "The bar the challenger must reach on the gate metric",
            "Latency budget (ms)",
        ),
        "Run": ("reason", "Why this run was started; recorded on the model version."),
    }
    for letter, (section, texts) in zip("abcde", sections.items(), strict=False):
        ui.click(section, scope=dialog)
        ui.wait_for(lambda texts=texts: all(text in dialog.text for text in texts), f"the {section} params")
        ui.shot(f"06{letter}-trigger-form-{section.lower()}")

    ui.click("Model", scope=dialog)
    epochs = ui.wait_for(lambda: dialog.find_element("name", "element_epochs"), "the epochs field")
    ui.set_value(epochs, "3")
    ui.click("Run", scope=dialog)
    ui.set_value(ui.wait_for(lambda: dialog.find_element("id", "element_reason"), "the reason field"), "ui e2e")
    ui.shot("07-trigger-form-filled")
    ui.click("Trigger", scope=dialog)
    ui.wait_for_text("Dag Run Triggered")

    new_runs = ui.wait_for(
        lambda: [r for r in e2e.runs(TRAINING_DAG_ID) if r["dag_run_id"] not in before],
        "the run triggered from the form (REST API)",
    )
    assert len(new_runs) == 1, new_runs
    run = new_runs[0]
    assert run["run_type"] == "manual" and run["conf"]["epochs"] == 3 and run["conf"]["reason"] == "ui e2e", run
    finished = e2e.wait_for_run(TRAINING_DAG_ID, run["dag_run_id"], timeout=RUN_TIMEOUT)
    assert finished["state"] == "success", e2e.diagnostics(TRAINING_DAG_ID, run["dag_run_id"])

    # the grid of the run, and the runs list with its state
    ui.open(f"/dags/{TRAINING_DAG_ID}/runs/{run['dag_run_id']}")
    ui.wait_for_text(run["dag_run_id"], "deploy")
    ui.wait_for_text("Success")
    ui.shot("08-grid-run-succeeded")
