"""The Airflow UI in headless Chromium: login, the DAGs and their docs, the trigger form, a run from it.

Drives Debian's ``chromium`` through ``chromedriver`` (Selenium) against the real
api-server of tests/e2e/conftest.py. Screenshots of each step go to
``test-artifacts/e2e/`` (git-ignored). ``make test`` installs Chromium via apt.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RUN_TIMEOUT, TRAINING_DAG_ID

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists(),
        reason="Debian's chromium and chromium-driver are not installed (`make test` installs "
        "them: apt-get install chromium chromium-driver)",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 90  # seconds for a page or an element: the UI shares 2 cores with the whole of Airflow


@pytest.fixture(scope="module")
def browser(e2e, artifacts):
    """A logged-out headless Chromium with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="e2e-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-extensions",
        "--window-size=1600,1000",
        "--lang=en-US",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Waits and screenshots around one driver, with the page's text in every failure."""

    def __init__(self, driver, e2e, artifacts: Path):
        self.driver = driver
        self.e2e = e2e
        self.artifacts = artifacts

    def open(self, path: str) -> None:
        self.driver.get(f"{self.e2e.stack.api_url}{path}")

    def text(self) -> str:
        from selenium.common.exceptions import WebDriverException

        try:
            return self.driver.find_element("tag name", "body").text
        except WebDriverException:
            return ""

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait_for(self, condition, what: str, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = condition()
            except Exception:  # the page is still rendering: elements come and go
                result = None
            if result:
                return result
            time.sleep(0.5)
        shot = self.shot(f"failed-{what.replace(' ', '-')[:60]}")
        pytest.fail(
            f"UI: {what} not seen after {timeout:.0f}s at {self.driver.current_url} (screenshot {shot})\n"
            f"page text:\n{self.text()[:3000]}"
        )

    def wait_for_text(self, *texts: str, timeout: float = WAIT) -> None:
        self.wait_for(lambda: all(text in self.text() for text in texts), f"text {texts!r}", timeout)

    def button(self, label: str, scope=None):
        """The visible, enabled button whose text, aria-label or title is ``label`` (icon buttons have no text)."""
        root = scope or self.driver
        xpath = f".//button[normalize-space(.)='{label}' or @aria-label='{label}' or @title='{label}']"
        for element in root.find_elements("xpath", xpath):
            if element.is_displayed() and element.is_enabled():
                return element
        return None

    def click(self, label: str, scope=None) -> None:
        element = self.wait_for(lambda: self.button(label, scope), f"button {label}")
        self.click_element(element, f"button {label}")

    def click_element(self, element, what: str) -> None:
        """Click ``element`` once it takes the click: while a section opens, the layout still moves
        and another element (the JSON editor of a param, say) may sit where it is about to be."""

        def clicked() -> bool:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.click()  # raises while another element would receive the click
            return True

        self.wait_for(clicked, f"a clickable {what}")

    def set_value(self, element, value: str) -> None:
        """Type into a React-controlled input the way a user does: select all, then type."""
        from selenium.webdriver.common.keys import Keys

        self.click_element(element, f"field {element.get_attribute('name')}")
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.BACKSPACE)
        element.send_keys(value)


@pytest.fixture(scope="module")
def ui(browser, e2e, artifacts) -> Page:
    return Page(browser, e2e, artifacts)


@pytest.fixture(scope="module")
def logged_in(ui: Page) -> Page:
    ui.open("/")
    username = ui.wait_for(lambda: ui.driver.find_element("name", "username"), "the login form")
    ui.set_value(username, "admin")
    ui.set_value(ui.driver.find_element("name", "password"), ui.e2e.stack.admin_password())
    ui.shot("01-login")
    ui.click("Sign in")
    ui.wait_for(lambda: "/auth/login" not in ui.driver.current_url and "Dags" in ui.text(), "the home page")
    return ui


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
