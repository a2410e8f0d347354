"""Alerts through Airflow's notifiers: one call per event, to every receiver that is configured.

Receivers are Airflow connections (``airflow_settings.yaml``, or any secrets backend); a
connection that does not exist is a receiver that is off:

============================ ========================== ======================================
connection id                type                       sends with
============================ ========================== ======================================
``alerts_webhook``           ``apprise``                ``AppriseNotifier``: generic JSON
                                                        (``json://`` / ``jsons://`` URL in the
                                                        extra's ``config``), or any Apprise URL
``alerts_slack``             ``slackwebhook``           ``SlackWebhookNotifier``: Slack's JSON
``alerts_email``             ``smtp``                   ``SmtpNotifier``; recipients in the
                                                        extra's ``to``
============================ ========================== ======================================

What sending promises:

- **Once per event and receiver.** Each (dedup key, connection id) is claimed in the alert
  ledger (:mod:`include.alerts.ledger`) before it is sent; a retry, a cleared task or a second
  window of the same event finds the claim and sends nothing. A send that fails releases its
  claim, so a later try sends it; one that times out keeps it (it may have arrived).
- **Never fails a task.** Every error (a dead receiver, a broken connection, the ledger) is
  logged and swallowed; all receivers are sent to in parallel and waited for at most
  :data:`SEND_TIMEOUT_S` seconds in total, so a receiver that hangs delays the task by that, no more.
- **No secrets.** Every text is scrubbed of the receivers' passwords and credential-bearing
  extras, of ``user:password@`` in URLs and of every value Airflow's secrets masker knows.

The alert text is data, not a template: notifiers are called with ``notify()``, never rendered
with Jinja, so a ``{{`` in an error message reaches the receiver as it is.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from include.alerts.message import Alert

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "alerts_webhook"
SLACK_CONN_ID = "alerts_slack"
EMAIL_CONN_ID = "alerts_email"
RECEIVER_CONN_IDS = (WEBHOOK_CONN_ID, SLACK_CONN_ID, EMAIL_CONN_ID)
# the longest a task waits for all its receivers together (seconds)
SEND_TIMEOUT_S = 10.0
# extra keys whose values are credentials, beyond what Airflow's masker treats as sensitive
_SECRET_EXTRA_KEYS = ("password", "secret", "token", "key", "auth", "path", "url", "webhook")


# ---------------------------------------------------------------------- sending
def send_alert(alert: Alert, context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Send ``alert`` to every configured receiver, at most once per receiver for its dedup key.

    ``context`` is the task's context, passed to the notifiers (None: none). Returns what
    happened per connection id: ``"sent"``, ``"already sent"``, ``"not configured"``,
    ``"failed: <error>"`` or ``"timed out"``. Never raises: errors are logged and reported there.
    """
    try:
        return _send(alert, context or {})
    except Exception as exc:  # noqa: BLE001 - an alert must never fail the task that raises it
        log.warning("alert %s not sent: %s: %s", alert.dedup_key, type(exc).__name__, exc)
        return {conn_id: f"failed: {type(exc).__name__}" for conn_id in RECEIVER_CONN_IDS}


def _send(alert: Alert, context: Mapping[str, Any]) -> dict[str, str]:
    connections = {conn_id: _connection(conn_id) for conn_id in RECEIVER_CONN_IDS}
    outcomes = {conn_id: "not configured" for conn_id, conn in connections.items() if conn is None}
    configured = {conn_id: conn for conn_id, conn in connections.items() if conn is not None}
    if not configured:
        log.info("alert %s: no receiver configured (%s)", alert.kind, ", ".join(RECEIVER_CONN_IDS))
        return outcomes
    alert = alert.scrubbed(_secrets_of(configured.values()))
    alert = _masked(alert)
    ledger = _ledger()
    sends: dict[str, tuple[threading.Thread, dict[str, str]]] = {}
    for conn_id, conn in configured.items():
        claim = f"{alert.dedup_key}|{conn_id}"
        if not _claim(ledger, claim):
            outcomes[conn_id] = "already sent"
            continue
        result: dict[str, str] = {}
        thread = threading.Thread(
            target=_deliver, args=(conn_id, conn, alert, context, result), name=f"alert-{conn_id}", daemon=True
        )
        thread.start()
        sends[conn_id] = (thread, result)
    _wait_all([thread for thread, _ in sends.values()], SEND_TIMEOUT_S)
    for conn_id, (thread, result) in sends.items():
        if thread.is_alive():
            outcomes[conn_id] = "timed out"
            log.warning("alert %s to %s: no answer within %.0fs; not retried", alert.kind, conn_id, SEND_TIMEOUT_S)
            continue
        outcomes[conn_id] = result.get("outcome", "failed: unknown")
        if outcomes[conn_id] != "sent":
            _release(ledger, f"{alert.dedup_key}|{conn_id}")
    log.info("alert %s (%s): %s", alert.kind, alert.dedup_key, json.dumps(outcomes, sort_keys=True))
    return outcomes


def _wait_all(threads: Iterable[threading.Thread], timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _deliver(conn_id: str, conn, alert: Alert, context: Mapping[str, Any], result: dict[str, str]) -> None:
    try:
        _notifier(conn_id, conn, alert).notify(context)
    except Exception as exc:  # noqa: BLE001 - reported to send_alert, which logs it
        # the error's text may quote the receiver's URL: only its type and scrubbed words are kept
        message = _masked_text(_scrub(str(exc), _secrets_of([conn])))[:300]
        log.warning("alert %s to %s failed: %s: %s", alert.kind, conn_id, type(exc).__name__, message)
        result["outcome"] = f"failed: {type(exc).__name__}: {message}"
    else:
        result["outcome"] = "sent"


def _notifier(conn_id: str, conn, alert: Alert):
    """The provider's notifier for the receiver ``conn_id``, with the alert's text for its format."""
    if conn_id == SLACK_CONN_ID:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(
            slack_webhook_conn_id=conn_id,
            text=f"{alert.title}\n{alert.text()}",
            blocks=alert.slack_blocks(),
            unfurl_links=False,
            unfurl_media=False,
            timeout=int(SEND_TIMEOUT_S),
        )
    if conn_id == EMAIL_CONN_ID:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        extra = conn.extra_dejson
        if not extra.get("to"):
            raise ValueError(f"connection {conn_id} has no 'to' (the recipients) in its extra")
        return SmtpNotifier(
            to=extra["to"],
            from_email=extra.get("from_email") or "airflow-alerts@localhost",
            subject=alert.title,
            html_content=alert.html(),
            smtp_conn_id=conn_id,
        )
    return _checked_apprise_notifier(conn_id, alert)


def _checked_apprise_notifier(conn_id: str, alert: Alert):
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier

    class CheckedAppriseNotifier(AppriseNotifier):
        """``AppriseNotifier`` that raises when no service took the message (the hook only logs it)."""

        def notify(self, context):
            import apprise

            services = apprise.Apprise()
            self.hook.set_config_from_conn(conn=self.hook.get_connection(self.apprise_conn_id), apprise_obj=services)
            if not services.notify(
                body=self.body, title=self.title, notify_type=self.notify_type, body_format=self.body_format
            ):
                raise ConnectionError("no Apprise service accepted the alert")

    return CheckedAppriseNotifier(
        apprise_conn_id=conn_id, title=alert.title, body=alert.text(), notify_type=alert.severity
    )


# ---------------------------------------------------------------------- receivers, ledger, secrets
def _connection(conn_id: str):
    """The connection ``conn_id``, or None when it does not exist (that receiver is off)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        return Connection.get(conn_id)
    except (AirflowRuntimeError, AirflowNotFoundException):
        return None
    except Exception as exc:  # noqa: BLE001 - a broken connection turns one receiver off, not the task
        log.warning("alert receiver %s unreadable: %s", conn_id, type(exc).__name__)
        return None


def _secrets_of(connections: Iterable[Any]) -> list[str]:
    """Each connection's password and the extra values that carry credentials (URLs, tokens)."""
    secrets: list[str] = []
    for conn in connections:
        secrets.append(conn.password or "")
        try:
            extra = conn.extra_dejson
        except Exception:  # noqa: BLE001 - an unreadable extra holds nothing to scrub
            extra = {}
        secrets += _secret_values(extra)
    return [secret for secret in secrets if len(secret) >= 4]


def _secret_values(value: Any, key: str = "") -> list[str]:
    if isinstance(value, Mapping):
        return [found for name, item in value.items() for found in _secret_values(item, str(name))]
    if isinstance(value, list):
        return [found for item in value for found in _secret_values(item, key)]
    if isinstance(value, str) and any(part in key.lower() for part in _SECRET_EXTRA_KEYS):
        return [value]
    return []


def _scrub(text: str, secrets: Iterable[str]) -> str:
    from include.alerts.message import scrub

    return scrub(text, secrets)


def _masked_text(text: str) -> str:
    """``text`` with every secret Airflow's masker knows (connection passwords and extras a task has
    read, sensitive Variables) replaced by ``***``."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # an SDK without it: the explicit scrubbing above still applies
        return text
    return redact(text)


def _masked(alert: Alert) -> Alert:
    from dataclasses import replace

    return replace(
        alert,
        why=_masked_text(alert.why),
        run_url=None if alert.run_url is None else _masked_text(alert.run_url),
        facts={_masked_text(label): _masked_text(value) for label, value in alert.facts.items()},
    )


def _ledger():
    """The alert ledger of this task's settings, or None (logged) when it cannot be opened."""
    try:
        from include.alerts.ledger import AlertLedger
        from mlops_airflow.runtime import task_settings

        return AlertLedger(task_settings().alert_ledger)
    except Exception as exc:  # noqa: BLE001 - without the ledger alerts still go out, maybe twice
        log.warning("alert ledger unavailable (%s: %s): sending without de-duplication", type(exc).__name__, exc)
        return None


def _claim(ledger, key: str) -> bool:
    if ledger is None:
        return True
    try:
        return ledger.claim(key)
    except Exception as exc:  # noqa: BLE001 - a duplicate is better than a lost alert
        log.warning("alert ledger claim of %s failed (%s): sending anyway", key, type(exc).__name__)
        return True


def _release(ledger, key: str) -> None:
    if ledger is None:
        return
    try:
        ledger.release(key)
    except Exception as exc:  # noqa: BLE001 - the claim stays: the alert is not retried
        log.warning("alert ledger release of %s failed (%s)", key, type(exc).__name__)


# ---------------------------------------------------------------------- links and context
def dag_run_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI's page of run ``run_id`` of ``dag_id`` (``[api] base_url`` + ``/dags/.../runs/...``)."""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base_url = conf.get("api", "base_url", fallback="/")
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _run_of(context: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """``(dag_id, run_id, run URL)`` of the task's context."""
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "unknown")
    run_id = getattr(dag_run, "run_id", None) or str(context.get("run_id", "unknown"))
    try:
        url = dag_run_url(dag_id, run_id)
    except Exception:  # noqa: BLE001 - an alert without a link is still an alert
        url = None
    return dag_id, run_id, url


def _model_name() -> str:
    try:
        from mlops_airflow.runtime import task_settings

        return task_settings().model_name
    except Exception:  # noqa: BLE001 - the settings' own task reports a broken setting
        return "model"


def _guarded(build: Callable[[], Alert | None], context: Mapping[str, Any] | None) -> dict[str, str]:
    """Build an alert and send it; a failure to build it is logged, never raised."""
    try:
        alert = build()
    except Exception as exc:  # noqa: BLE001 - an alert must never fail the task that raises it
        log.warning("alert not built: %s: %s", type(exc).__name__, exc)
        return {}
    return {} if alert is None else send_alert(alert, context)


def _current_context(context: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if context is not None:
        return context
    from airflow.sdk import get_current_context

    return get_current_context()


# ---------------------------------------------------------------------- the events
def on_validation_failed(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of ``validate``: alerts when the data failed its expectations (the
    task's ``AirflowFailException`` starts with "data validation failed"); other failures are
    Airflow's ordinary task failures and send nothing here."""

    def build():
        from include.alerts import events

        error = str(context.get("exception") or "")
        if not error.startswith("data validation failed"):
            return None
        _, run_id, url = _run_of(context)
        return events.validation_failed(_model_name(), run_id, error, url)

    _guarded(build, context)


def on_deploy_failed(context: Mapping[str, Any]) -> None:
    """``on_retry_callback`` and ``on_failure_callback`` of ``deploy``: alerts on ``DeployFailed`` (its
    message says which stage failed, why, and what is served now after the rollback). Every failed
    try rolled back, so the first one alerts; the later tries of the run find it already sent."""

    def build():
        from include.alerts import events
        from include.deployment import DeployFailed

        error = context.get("exception")
        if not isinstance(error, DeployFailed):
            return None
        _, run_id, url = _run_of(context)
        return events.deploy_failed(error.model_name, error.version, run_id, str(error), url)

    _guarded(build, context)


def alert_gate_rejected(decision: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Alert that the gate rejected the challenger; ``decision`` is ``GateDecision.to_dict()`` (the
    gate task's XCom ``decision``). Returns :func:`send_alert`'s outcomes; never raises."""

    def build():
        from include.alerts import events

        _, run_id, url = _run_of(_current_context(context))
        return events.gate_rejected(_model_name(), run_id, decision, url)

    return _guarded(build, context)


def alert_approval_waiting(
    version: str, gate_reason: str | None, context: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Alert that the deploy of ``version`` waits for a person's approval. Never raises."""

    def build():
        from include.alerts import events

        _, run_id, url = _run_of(_current_context(context))
        return events.approval_waiting(_model_name(), version, run_id, gate_reason, url)

    return _guarded(build, context)


def alert_drift_retrain(
    *,
    champion_version: str,
    window_start: str,
    window_end: str,
    reason: str,
    drift: Mapping[str, Any],
    training_dag_id: str,
    training_run_id: str,
    context: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Alert that drift made ``drift_monitor`` trigger ``training_run_id`` of ``training_dag_id``
    (see :func:`include.alerts.events.drift_retrain` for the arguments). Never raises."""

    def build():
        from include.alerts import events

        return events.drift_retrain(
            _model_name(),
            champion_version,
            window_start,
            window_end,
            reason,
            drift,
            training_run_id,
            dag_run_url(training_dag_id, training_run_id),
        )

    return _guarded(build, context)


def alert_rollout_ended(
    *,
    candidate_version: str,
    champion_version: str | None,
    outcome: str,
    reason: str,
    mode: str | None = None,
    rollout_id: str | None = None,
    numbers: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Alert that a rollout ended: ``outcome`` ``"promoted"`` or ``"rolled_back"``.

    ``candidate_version`` is the version rolled out, ``champion_version`` the champion it was
    compared with, ``reason`` the decision's sentence with its numbers (``rollout.reason``),
    ``mode`` ``"shadow"`` or ``"canary"``, ``rollout_id`` what tells two rollouts of one version
    apart (pass ``rollout.started_at``), ``numbers`` flat label/value pairs shown with it,
    ``model_name`` the registered model (None: the settings'). The link points at the calling
    task's run. One alert per (candidate, rollout_id, outcome) and receiver. Returns
    :func:`send_alert`'s outcomes; never raises (a bad ``outcome`` is logged, nothing sent).
    """

    def build():
        from include.alerts import events

        _, _, url = _run_of(_current_context(context))
        return events.rollout_ended(
            model_name or _model_name(),
            candidate_version,
            champion_version,
            outcome,
            reason,
            mode=mode,
            rollout_id=rollout_id,
            numbers=numbers,
            run_url=url,
        )

    return _guarded(build, context)


def alert_rollout_decision(decision: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Alert on a decision of :func:`include.rollout.controller.run_controller` that ended its rollout.

    ``decision`` is the controller's dict (``state``, ``reason``, ``numbers``, the versions, ``mode`` and
    ``started_at``); a rollout still running (a step, or waiting for labels) sends nothing and returns ``{}``.
    The decision's top-level numbers (not the per-slice tables) go with the alert. Never raises.
    """
    outcome = {"promoted": "promoted", "rolled_back": "rolled_back"}.get(str(decision.get("state")))
    if outcome is None:
        return {}
    numbers = {
        label: value
        for label, value in (decision.get("numbers") or {}).items()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool)
    }
    return alert_rollout_ended(
        candidate_version=str(decision.get("candidate_version")),
        champion_version=decision.get("champion_version"),
        outcome=outcome,
        reason=str(decision.get("reason", "")),
        mode=decision.get("mode"),
        rollout_id=decision.get("started_at"),
        numbers=numbers,
        context=context,
    )
