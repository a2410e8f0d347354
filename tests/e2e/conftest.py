"""The real local Airflow for the end-to-end tests: api-server, scheduler, dag-processor, triggerer.

One stack per run of this package, on free ports of 127.0.0.1, with a private
MLOPS_HOME (never the checkout's .local/): set up, started, given a few weeks of
demo data, and always stopped afterwards (teardown, atexit and SIGTERM alike).

The data sits just before today so that the DAGs' own defaults fit it: a run
triggered from the UI with the form's default params (training window: the 28
days before the run) finds the history, and the nightly drift_monitor run that
unpausing creates (yesterday's window) finds no traffic and skips.

    today - 26 .. today - 7    labelled history, HISTORY_DAYS x ROWS_PER_DAY
    today - 6  .. today - 3    served traffic (TRAFFIC_DAYS), covariate drift from DRIFT_FROM
"""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from scripts.local_stack import LocalStack, free_port, port_is_free
from tests.conftest import TEST_LATENCY_BUDGET_MS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"

TODAY = datetime.now(UTC).date()
HISTORY_DAYS = 20
ROWS_PER_DAY = 250
HISTORY_START = TODAY - timedelta(days=26)
HISTORY_END = HISTORY_START + timedelta(days=HISTORY_DAYS - 1)
TRAFFIC_START = HISTORY_END + timedelta(days=1)
TRAFFIC_DAYS = 4
TRAFFIC_ROWS_PER_DAY = 300
DRIFT_FROM = TRAFFIC_START + timedelta(days=2)
TRAFFIC_DAYS_LIST = [TRAFFIC_START + timedelta(days=offset) for offset in range(TRAFFIC_DAYS)]

TRAINING_DAG_ID = "ml_training"
DRIFT_DAG_ID = "drift_monitor"
ROLLBACK_DAG_ID = "ml_rollback"
FINISHED = {"success", "failed"}
RUN_TIMEOUT = 600


def utc(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


class E2E:
    """The running stack and what the tests need from it."""

    def __init__(self, stack, client):
        self.stack = stack
        self.client = client
        self.settings = stack.settings

    # ------------------------------------------------------------------ REST helpers
    def runs(self, dag_id: str, **params) -> list[dict]:
        params.setdefault("limit", 100)
        return self.client.call("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def run_count(self, dag_id: str) -> int:
        return self.client.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1})["total_entries"]

    def unpause(self, dag_id: str) -> None:
        self.client.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """Poll until the run finishes; on timeout, fail with the tasks' states and logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in FINISHED:
                return run
            time.sleep(3)
        pytest.fail(f"{dag_id} run {run_id} not finished after {timeout:.0f}s\n{self.diagnostics(dag_id, run_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti.get("state") or "none" for ti in self.client.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        response = self.client.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True},
        )
        return response.json().get("value") if response.status_code == 200 else None

    # ------------------------------------------------------------------ failure messages
    def component_logs(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.stack.run_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name} (last {lines} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no component logs)"

    def task_logs(self, dag_id: str, run_id: str, lines: int = 60) -> str:
        """Tails of the run's task logs, the unfinished or failed tasks first."""
        folder = self.stack.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        logs = sorted(folder.glob("task_id=*/attempt=*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        parts = []
        for log in logs[:3]:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.relative_to(folder)} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no task logs under {folder})"

    def diagnostics(self, dag_id: str, run_id: str) -> str:
        try:
            states = self.task_states(dag_id, run_id)
        except Exception as exc:  # the API itself may be what broke
            states = {"(task states unavailable)": repr(exc)}
        return f"task states: {states}\n{self.task_logs(dag_id, run_id)}\nAirflow components:\n{self.component_logs()}"


def _process_groups(stack) -> set[int]:
    """The process groups of everything the stack runs: each component and the model server lead one."""
    from include.deployment.local import LocalServingDeployer

    groups = {record.pid for record in stack.running().values()}
    serving = LocalServingDeployer(stack.settings).status()
    if serving is not None:
        groups.add(serving.pid)
    return groups


def _survivors(groups: set[int]) -> list[str]:
    """Processes still alive in ``groups`` (scheduler workers, api-server workers and the like)."""
    import os

    import psutil

    alive = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getpgid(process.pid) in groups and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])[:120]}")
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def _install_stop_handlers(stack):
    """Stop the stack at interpreter exit and on SIGTERM, whatever happens to the fixture."""
    stopped = []

    def stop_once() -> None:
        if not stopped:
            stopped.append(True)
            stack.stop()

    atexit.register(stop_once)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        stop_once()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}: stopped the e2e Airflow")

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        atexit.unregister(stop_once)

    return stop_once, restore


@pytest.fixture(scope="package")
def e2e(tmp_path_factory) -> E2E:
    """The whole local Airflow on free ports with a private home and the demo history landed."""
    from include.data.spec import load_spec
    from include.simulation.generate import land_days

    home = tmp_path_factory.mktemp("e2e-home")
    serving_port = free_port()
    stack = LocalStack(home=home, api_port=free_port(), extra_env={"MLOPS_SERVING_PORT": str(serving_port)})
    # the stack's settings are those its processes see (the serving port included), so that
    # stop() finds the model server and the tests reach it
    assert stack.settings.home == stack.home and stack.settings.serving_port == serving_port
    stop_once, restore = _install_stop_handlers(stack)
    started_groups: set[int] = set()
    try:
        stack.setup()
        spec = load_spec(stack.settings.dataset_spec, stack.env())
        land_days(spec, HISTORY_START, HISTORY_DAYS, ROWS_PER_DAY)
        try:
            stack.start(timeout=300)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"the local Airflow did not start: {exc}\n{E2E(stack, None).component_logs()}")
        started_groups = _process_groups(stack)
        client = stack.api()
        for dag_id in (TRAINING_DAG_ID, DRIFT_DAG_ID, ROLLBACK_DAG_ID):
            client.wait_for_dag(dag_id, timeout=240)
        yield E2E(stack, client)
    finally:
        # those started, and the model server the DAG runs started since
        groups = _process_groups(stack) | started_groups
        try:
            stop_once()
        finally:
            restore()
        # a stop that leaves a worker behind is a bug users would meet as a busy port or a stale scheduler
        survivors = _survivors(groups)
        if survivors or not port_is_free(stack.api_port):
            pytest.fail(f"processes left running after stop (api port {stack.api_port}): {survivors}")


@pytest.fixture(scope="package")
def first_champion(e2e: E2E) -> dict:
    """ml_training triggered through the REST API on the landed history, followed to its end."""
    e2e.unpause(TRAINING_DAG_ID)
    conf = {
        "epochs": 3,
        "training_window_days": HISTORY_DAYS,
        "training_window_end": HISTORY_END.isoformat(),
        "gate_min": 0.6,
        "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
        "reason": "e2e",
    }
    run = e2e.client.trigger(TRAINING_DAG_ID, conf)
    finished = e2e.wait_for_run(TRAINING_DAG_ID, run["dag_run_id"])
    return {"run": finished, "conf": conf, "states": e2e.task_states(TRAINING_DAG_ID, run["dag_run_id"])}


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """test-artifacts/e2e/, emptied first so that every screenshot in it is from this run."""
    if ARTIFACTS.exists():
        for stale in ARTIFACTS.glob("*.png"):
            stale.unlink()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="package")
def served_traffic(e2e: E2E, first_champion: dict) -> list:
    """TRAFFIC_DAYS days of requests to the champion the REST-triggered run deployed, with
    covariate drift from DRIFT_FROM: ``include.simulation.traffic.simulate``'s days."""
    assert first_champion["run"]["state"] == "success", "no champion: see test_rest_trigger_trains_and_registers"
    from include.data.spec import load_spec
    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate

    spec = load_spec(e2e.settings.dataset_spec, e2e.stack.env())
    return simulate(
        e2e.settings,
        spec,
        e2e.settings.serving_url,
        TRAFFIC_START,
        TRAFFIC_DAYS,
        TRAFFIC_ROWS_PER_DAY,
        drift=DriftConfig(kind="covariate", start=DRIFT_FROM, strength=1.0),
    )


@pytest.fixture(scope="package")
def drift_backfill(e2e: E2E, served_traffic: list) -> dict:
    """drift_monitor backfilled over the served days through the REST API, one window at a time
    as the local profile's SQLite needs, followed to its end with the retraining it triggered.

    Returns ``{"backfill": the backfill, "runs": its drift_monitor runs, "decisions": {day:
    the retraining decision}, "retraining": [the ml_training runs it triggered, finished]}``.
    """
    # created while the Dag is paused, then unpaused: what a backfill on SQLite needs (see create_backfill)
    backfill = e2e.client.create_backfill(
        DRIFT_DAG_ID,
        utc(TRAFFIC_DAYS_LIST[0]).isoformat(),
        utc(TRAFFIC_DAYS_LIST[-1]).isoformat(),
        max_active_runs=1,
        reprocess_behavior="completed",
        dag_run_conf={"allow_backfill_retrain": True, "min_rows": 100},
    )
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        # the run listing carries no backfill id: this backfill's runs are the backfill runs in its range
        runs = [
            r
            for r in e2e.runs(DRIFT_DAG_ID, run_type="backfill")
            if TRAFFIC_DAYS_LIST[0].isoformat() <= r["data_interval_start"][:10] <= TRAFFIC_DAYS_LIST[-1].isoformat()
        ]
        done = e2e.client.call("GET", f"/backfills/{backfill['id']}").get("completed_at")
        if done and all(r["state"] in FINISHED for r in runs):
            break
        if time.monotonic() > deadline:
            unfinished = [r["dag_run_id"] for r in runs if r["state"] not in FINISHED]
            details = "\n".join(e2e.diagnostics(DRIFT_DAG_ID, run_id) for run_id in unfinished[:1])
            pytest.fail(
                f"backfill {backfill['id']} not finished after {RUN_TIMEOUT}s; runs "
                f"{[(r['dag_run_id'], r['state']) for r in runs]}\n{details}"
            )
        time.sleep(3)
    decisions = {
        r["data_interval_start"][:10]: e2e.xcom(DRIFT_DAG_ID, r["dag_run_id"], "trigger_retraining", "decision")
        for r in runs
    }
    retraining = [r for r in e2e.runs(TRAINING_DAG_ID) if r["dag_run_id"].startswith("drift__")]
    finished = [e2e.wait_for_run(TRAINING_DAG_ID, r["dag_run_id"]) for r in retraining]
    return {"backfill": backfill, "runs": runs, "decisions": decisions, "retraining": finished}


# ---------------------------------------------------------------------- the browser
NEEDS_CHROMIUM = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists(),
    reason="Debian's chromium and chromium-driver are not installed (`make test` installs "
    "them: apt-get install chromium chromium-driver)",
)
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
