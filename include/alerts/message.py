"""What an alert says: one record per event, rendered as plain text, HTML and Slack blocks.

An :class:`Alert` names the event (``kind``), the model and version it is about, a link to
the Airflow run and one paragraph saying why, with the numbers. Its ``dedup_key`` says
which alerts are the same event: a receiver gets one alert per key, however many task
tries or windows report it (:mod:`include.alerts.ledger`).

Nothing secret may reach a receiver: :func:`scrub` takes credentials out of URLs and
removes every secret value it is given, and every field of an alert goes through it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VALIDATION_FAILED = "validation_failed"
GATE_REJECTED = "gate_rejected"
DEPLOY_FAILED = "deploy_failed"
APPROVAL_WAITING = "approval_waiting"
DRIFT_RETRAIN = "drift_retrain"
ROLLOUT_PROMOTED = "rollout_promoted"
ROLLOUT_ROLLED_BACK = "rollout_rolled_back"

# kind -> (headline, severity in Apprise's words: info | success | warning | failure)
EVENTS: dict[str, tuple[str, str]] = {
    VALIDATION_FAILED: ("data validation failed", "failure"),
    GATE_REJECTED: ("challenger rejected by the gate", "warning"),
    DEPLOY_FAILED: ("deploy failed and rolled back", "failure"),
    APPROVAL_WAITING: ("deploy waiting for approval", "info"),
    DRIFT_RETRAIN: ("drift: retraining triggered", "warning"),
    ROLLOUT_PROMOTED: ("rollout promoted the candidate", "success"),
    ROLLOUT_ROLLED_BACK: ("rollout rolled back", "failure"),
}

# a "why" longer than this is cut: a receiver shows a paragraph, the run's log has the rest
MAX_WHY_CHARS = 1500
REDACTED = "***"
# user:password@ in any URL; what precedes '@' in the authority is a credential
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]+@")
# query parameters whose value is a credential (?token=..., &api_key=..., &password=...)
_SECRET_PARAMS = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z_\-]*(?:token|secret|password|passwd|key|signature|auth)[A-Za-z_\-]*))=[^&\s#]+",
    re.IGNORECASE,
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: every value in ``secrets`` (non-empty strings) becomes ``***``,
    as do the ``user:password@`` part of any URL and credential-like query parameters
    (``token=``, ``password=``, ``api_key=``...). Returns a str; never raises for a str input."""
    for secret in sorted({s for s in secrets if isinstance(s, str) and s.strip()}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)
    return _SECRET_PARAMS.sub(lambda match: f"{match['name']}={REDACTED}", text)


def one_paragraph(text: str, limit: int = MAX_WHY_CHARS) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space), cut to
    ``limit`` characters with a trailing "..." when longer. Returns a str."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


@dataclass(frozen=True)
class Alert:
    """One event to report.

    ``kind`` is a key of :data:`EVENTS`; ``model_name`` and ``version`` (None when no version
    exists yet, e.g. a rejected challenger is never registered) say what it is about; ``why`` is
    one paragraph with the numbers; ``run_url`` links to the Airflow run (None when unknown);
    ``dedup_key`` identifies the event; ``facts`` are short label/value pairs shown beside the
    paragraph (e.g. ``{"drift share": "0.62"}``). Raises ``ValueError`` for an unknown kind or an
    empty ``dedup_key``.
    """

    kind: str
    model_name: str
    version: str | None
    why: str
    dedup_key: str
    run_url: str | None = None
    facts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ValueError(f"unknown alert kind {self.kind!r}; one of {', '.join(EVENTS)}")
        if not str(self.dedup_key).strip():
            raise ValueError("an alert needs a non-empty dedup_key")

    @property
    def severity(self) -> str:
        """``info``, ``success``, ``warning`` or ``failure`` (Apprise's notify types)."""
        return EVENTS[self.kind][1]

    @property
    def title(self) -> str:
        """One line: ``"[customer_churn v5] deploy failed and rolled back"``."""
        subject = self.model_name + (f" v{self.version}" if self.version else "")
        return f"[{subject}] {EVENTS[self.kind][0]}"

    def scrubbed(self, secrets: Iterable[str] = ()) -> Alert:
        """The same alert with every text field passed through :func:`scrub` (``secrets`` as there)."""
        secrets = list(secrets)

        def clean(value: str | None) -> str | None:
            return None if value is None else scrub(str(value), secrets)

        return Alert(
            kind=self.kind,
            model_name=clean(self.model_name),
            version=clean(self.version),
            why=clean(self.why),
            dedup_key=self.dedup_key,
            run_url=clean(self.run_url),
            facts={clean(label): clean(value) for label, value in self.facts.items()},
        )

    def text(self) -> str:
        """Plain text: the paragraph, then the facts and the run link, one per line."""
        lines = [one_paragraph(self.why), ""]
        lines += [f"{label}: {value}" for label, value in self._all_facts().items()]
        return "\n".join(lines)

    def html(self) -> str:
        """An HTML fragment for e-mail: the title, the paragraph and a table of the facts."""
        rows = "".join(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{_html_value(value)}</td></tr>"
            for label, value in self._all_facts().items()
        )
        return f"<h3>{html.escape(self.title)}</h3><p>{html.escape(one_paragraph(self.why))}</p><table>{rows}</table>"

    def slack_blocks(self) -> list[dict]:
        """Slack Block Kit blocks: a header, the paragraph and the facts as fields."""
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
            {"type": "section", "text": {"type": "plain_text", "text": one_paragraph(self.why, 2900)}},
        ]
        facts = [
            {"type": "mrkdwn", "text": f"*{_slack_escape(label)}*\n{_slack_value(value)}"}
            for label, value in self._all_facts().items()
        ]
        # a section holds at most 10 fields
        for start in range(0, len(facts), 10):
            blocks.append({"type": "section", "fields": facts[start : start + 10]})
        return blocks

    def _all_facts(self) -> dict[str, str]:
        facts = {"event": self.kind, "model": self.model_name}
        if self.version:
            facts["version"] = self.version
        facts.update(self.facts)
        if self.run_url:
            facts["run"] = self.run_url
        return facts


def _html_value(value: str) -> str:
    escaped = html.escape(value)
    return f"<a href='{escaped}'>{escaped}</a>" if value.startswith(("http://", "https://")) else escaped


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats only these three as control characters
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_value(value: str) -> str:
    if value.startswith(("http://", "https://")):
        return f"<{_slack_escape(value)}|open>"
    return _slack_escape(value)
