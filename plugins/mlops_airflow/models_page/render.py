"""The Models page as HTML: its JSON (:func:`include.reporting.models_page.models_page`) drawn as
tables and inline SVG charts. No external resource: the page renders offline and inside the
Airflow UI's frame. Every value is escaped.

The UI's frame is sandboxed without ``allow-top-navigation`` or ``allow-popups``, so a link may
neither leave the frame nor open a tab: a day's drift report opens in the frame (the UI's
address bar follows it, and Back returns), and links to Airflow's own pages (``target=_top``)
are taken by the page's one inline script (:data:`TOP_LINKS`), which moves the UI's router
there, as a click in the UI does. Opened alone, the page's links work without it."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

HOW_COLOURS = {
    "gate": "#2b8a3e",
    "approval": "#1971c2",
    "rollout": "#7048e8",
    "rollback": "#e8590c",
    "unknown": "#868e96",
}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#212529;font-size:14px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #dee2e6}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #dee2e6;padding:3px 7px;text-align:left;
vertical-align:top} th{background:#f1f3f5} .pass{color:#2b8a3e;font-weight:600} .fail{color:#c92a2a;font-weight:600}
.muted{color:#868e96} .badge{display:inline-block;border-radius:8px;padding:0 7px;color:#fff;font-size:12px}
details{margin:4px 0} summary{cursor:pointer;font-weight:600} code{font-size:12px}
"""

# In the UI's sandboxed frame a target=_top link is refused; the frame shares the UI's origin,
# so it can push the link's path onto the UI's history and let its router render it.
TOP_LINKS = """
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a[target=_top]") : null;
  if (!link || window.top === window) return;
  try {
    var url = new URL(link.href), ui = window.top;
    if (url.origin !== ui.location.origin) return;
    ui.history.pushState({}, "", url.pathname + url.search + url.hash);
    ui.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
    event.preventDefault();
  } catch (error) {
    // another origin's frame: the link is left to the browser
  }
});
"""


def _e(value: Any) -> str:
    return "—" if value is None or value == "" else escape(str(value))


def _version_name(version: Any) -> str:
    """``v3`` for a version, ``none`` where an alias points nowhere."""
    return "none" if version is None or version == "" else f"v{escape(str(version))}"


def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else _e(value)


def _link(url: str | None, text: Any, top: bool = True) -> str:
    """A link; ``top``: to a page of the Airflow UI, shown in the whole window (see :data:`TOP_LINKS`)."""
    if not url:
        return _e(text)
    target = ' target="_top"' if top else ""
    return f'<a href="{escape(url)}"{target}>{_e(text)}</a>'


def _badge(how: str) -> str:
    colour = HOW_COLOURS.get(how, HOW_COLOURS["unknown"])
    return f'<span class="badge" style="background:{colour}">{_e(how)}</span>'


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return '<span class="muted">unknown</span>'
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _table(headers: list[str], rows: list[list[str]], css_id: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{css_id}"' if css_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


def _time(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- timeline
def _timeline_svg(periods: list[dict[str, Any]], now: float) -> str:
    spans = [(p, _time(p.get("from")), _time(p.get("to")) or now) for p in periods]
    spans = [(p, start, end) for p, start, end in spans if start is not None]
    if not spans:
        return ""
    versions = sorted({p["version"] for p, *_ in spans}, key=int)
    first, last = min(s for _, s, _ in spans), max(now, max(e for *_, e in spans))
    width, left, row = 900, 60, 22
    scale = (width - left - 10) / max(last - first, 1.0)
    parts = [f'<svg id="timeline-chart" width="{width}" height="{row * len(versions) + 24}" role="img">']
    for index, version in enumerate(versions):
        parts.append(f'<text x="4" y="{index * row + 15}" font-size="12">v{escape(version)}</text>')
    for period, start, end in spans:
        y = versions.index(period["version"]) * row + 3
        x = left + (start - first) * scale
        colour = HOW_COLOURS.get(period.get("how"), HOW_COLOURS["unknown"])
        title = f"v{period['version']} {period.get('how')} {period.get('from')} → {period.get('to') or 'now'}"
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{max((end - start) * scale, 3):.1f}" height="16" '
            f'fill="{colour}"><title>{escape(title)}</title></rect>'
        )
    axis_y = row * len(versions) + 16
    for stamp, anchor in ((first, "start"), (last, "end")):
        label = datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
        x = left if anchor == "start" else width - 10
        parts.append(f'<text x="{x}" y="{axis_y}" font-size="11" text-anchor="{anchor}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline(document: dict[str, Any]) -> str:
    periods = document["timeline"]
    if not periods:
        return "<p class='muted'>No version has been champion yet.</p>"
    rows = [
        [
            f"v{_e(p['version'])}",
            _e(p.get("from") or "unknown"),
            _e(p.get("to") or "now (champion)")
            + (" <span class='muted'>(inferred)</span>" if p.get("inferred_end") else ""),
            _badge(p.get("how") or "unknown"),
            _e(p.get("by")),
            _e(p.get("reason")),
            _link(p.get("url"), f"{p.get('dag_id')} / {p.get('run_id')}"),
        ]
        for p in periods
    ]
    now = max([_time(document.get("generated_at")) or 0.0, *[_time(p.get("from")) or 0.0 for p in periods]])
    headers = ["version", "from", "to", "how", "by", "why", "Airflow run"]
    return _timeline_svg(periods, now) + _table(headers, rows, "timeline")


# ---------------------------------------------------------------------- gate, versions, rejections
def _checks(gate: dict[str, Any]) -> str:
    rows = [
        [
            _e(check["name"]),
            _e(check.get("scope")),
            _num(check.get("value")),
            _num(check.get("threshold")),
            _verdict(check.get("passed")),
            _e(check.get("detail")),
        ]
        for check in gate.get("checks", [])
    ]
    return _table(["check", "scope", "value", "threshold", "result", "detail"], rows) if rows else ""


def _gate(gate: dict[str, Any]) -> str:
    head = (
        f"<p>Gate {_verdict(gate.get('passed'))} on {_e(gate.get('metric'))}: challenger "
        f"{_num(gate.get('challenger_score'))}, champion {_num(gate.get('champion_score'))} "
        f"(v{_e(gate.get('compared_with'))}), bar {_num(gate.get('minimum'))}, max regression "
        f"{_num(gate.get('max_regression'))}, latency p95 {_num(gate.get('latency_p95_ms'), 1)} ms of "
        f"{_num(gate.get('latency_budget_ms'), 0)} ms.<br>{_e(gate.get('reason'))}</p>"
    )
    return head + _checks(gate)


def _key_values(title: str, values: dict[str, Any] | None) -> str:
    if not values:
        return ""
    rows = [[_e(key), _e(value)] for key, value in values.items()]
    return f"<h4>{escape(title)}</h4>" + _table(["field", "value"], rows)


def _card(card: dict[str, Any] | None) -> str:
    if not isinstance(card, dict):
        return "<p class='muted'>No model card logged.</p>"
    use = card.get("intended_use") or {}
    evaluation = card.get("evaluation") if isinstance(card.get("evaluation"), dict) else {}
    overall = evaluation.get("overall") or {}
    scores = ", ".join(f"{escape(k)} {_num(v)}" for k, v in overall.items() if not isinstance(v, dict))
    importance = card.get("feature_importance") or {}
    top = ", ".join(
        f"{escape(str(row.get('feature')))} {_num(row.get('importance_mean'))}"
        for row in (importance.get("features") or [])[:5]
    )
    drift = ((card.get("limits") or {}).get("drift") or {}).get("summary")
    return (
        "<h4>Model card</h4><ul>"
        f"<li>intended use: {_e(use.get('description'))} ({_e(use.get('task'))}, target {_e(use.get('target'))})</li>"
        f"<li>held-out scores: {scores or '—'}</li>"
        f"<li>most important features: {top or _e(importance.get('reason'))}</li>"
        f"<li>drift while champion: {_e(drift)}</li></ul>"
    )


def _version(entry: dict[str, Any]) -> str:
    aliases = " ".join(f"<b>[{escape(a)}]</b>" for a in entry["aliases"])
    airflow = entry["airflow"]
    summary = (
        f"v{_e(entry['version'])} {aliases} — registered {_e(entry['registered_at'])}, gate "
        f"{_verdict(entry['gate'].get('passed'))}"
    )
    registered_by = _link(airflow.get("url"), f"{airflow.get('dag_id')} / {airflow.get('run_id')}")
    return (
        f'<details class="version" id="version-{escape(entry["version"])}"><summary>{summary}</summary>'
        f"<p>Registered by {registered_by}; "
        f"MLflow run <code>{_e(entry['run_id'])}</code></p>"
        + _gate(entry["gate"])
        + _key_values("Lineage", entry["lineage"])
        + _key_values("Approval", entry.get("approval"))
        + _key_values("Rollback", entry.get("rollback"))
        + _key_values("Rollout", entry.get("rollout"))
        + _card(entry.get("model_card"))
        + "</details>"
    )


def _rejections(rejections: list[dict[str, Any]]) -> str:
    if not rejections:
        return "<p class='muted'>No challenger has been rejected by the gate.</p>"
    parts = []
    for rejected in rejections:
        airflow = rejected["airflow"]
        run = _link(airflow.get("url"), f"{airflow.get('dag_id')} / {airflow.get('run_id')}")
        parts.append(
            f'<details class="rejection"><summary>{_e(rejected["started_at"])} — rejected: '
            f"{_e(rejected.get('failed_checks'))}</summary><p>Airflow run {run}; MLflow run "
            f"<code>{_e(rejected['run_id'])}</code>; reason for the run: {_e(rejected.get('reason'))}</p>"
            f"{_gate(rejected['gate'])}</details>"
        )
    return "".join(parts)


# ---------------------------------------------------------------------- drift
def _drift_svg(days: list[dict[str, Any]]) -> str:
    width, height, left, bottom = 900, 160, 40, 20
    step = (width - left - 10) / max(len(days), 1)
    parts = [f'<svg id="drift-chart" width="{width}" height="{height + bottom}" role="img">']
    for fraction in (0.0, 0.5, 1.0):
        y = height - fraction * (height - 10)
        parts.append(f'<text x="2" y="{y + 4:.0f}" font-size="10">{fraction:.1f}</text>')
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.0f}" y2="{y:.0f}" stroke="#e9ecef"/>')
    for index, day in enumerate(days):
        share = day.get("drift_share")
        x = left + index * step
        if share is not None:
            bar = share * (height - 10)
            colour = "#c92a2a" if day.get("crossed") else "#4dabf7"
            title = f"{day['day']}: drift share {share:.2f}"
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{height - bar:.1f}" width="{max(step - 2, 1):.1f}" height="{bar:.1f}" '
                f'fill="{colour}"><title>{escape(title)}</title></rect>'
            )
        threshold = day.get("drift_share_threshold")
        if threshold is not None:
            y = height - threshold * (height - 10)
            parts.append(f'<line x1="{x:.1f}" x2="{x + step:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#212529"/>')
        if day.get("retrain_triggered"):
            parts.append(f'<text x="{x + step / 2:.1f}" y="12" font-size="12" text-anchor="middle">⟳</text>')
    if days:
        parts.append(f'<text x="{left}" y="{height + 15}" font-size="11">{escape(days[0]["day"])}</text>')
        end = escape(days[-1]["day"])
        parts.append(f'<text x="{width - 10}" y="{height + 15}" font-size="11" text-anchor="end">{end}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _heat_map(days: list[dict[str, Any]], columns: list[str]) -> str:
    if not columns:
        return ""
    cell, left = 18, 150
    width = left + cell * len(days) + 10
    parts = [f'<svg id="drift-heat-map" width="{width}" height="{cell * len(columns) + 10}" role="img">']
    for row, column in enumerate(columns):
        parts.append(f'<text x="2" y="{row * cell + 13}" font-size="11">{escape(column)}</text>')
        for index, day in enumerate(days):
            result = day["columns"].get(column)
            if not result or result.get("score") is None:
                continue
            threshold = result.get("threshold") or 0.1
            # the score as a share of its own threshold: at 1.0 the column drifted
            ratio = min(result["score"] / threshold, 2.0) / 2.0 if threshold > 0 else 1.0
            colour = f"rgb({255},{int(255 * (1 - ratio))},{int(255 * (1 - ratio))})"
            title = f"{day['day']} {column}: {result['score']:.4f} (threshold {threshold:.4f})"
            stroke = ' stroke="#212529"' if result.get("drifted") else ""
            parts.append(
                f'<rect x="{left + index * cell}" y="{row * cell}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{colour}"{stroke}><title>{escape(title)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _drift(drift: dict[str, Any]) -> str:
    days = drift.get("days") or []
    if not days:
        return f"<p class='muted'>No drift window judged yet. {_e(drift.get('reason'))}</p>"
    rows = []
    for day in days:
        band = day.get("estimated_roc_auc_band")
        estimated = _num(day.get("estimated_roc_auc"))
        if band:
            estimated += f" [{_num(band[0], 3)}, {_num(band[1], 3)}]"
        decision = _e(day.get("decision"))
        if day.get("retrain_triggered"):
            decision = f"<b>retrain triggered</b>: {decision}"
        rows.append(
            [
                _e(day["day"]),
                f"v{_e(day.get('champion_version'))}",
                _e(day.get("rows")),
                _num(day.get("drift_share"), 2) + f" / {_num(day.get('drift_share_threshold'), 2)}",
                _e(", ".join(day.get("drifted_columns") or []) or "none"),
                estimated,
                f"{_e(day.get('metric'))} {_num(day.get('score'))}",
                decision
                + (
                    f"<br><span class='muted'>{_e(day.get('decision_reason'))}</span>"
                    if day.get("decision_reason")
                    else ""
                ),
                _link(day.get("report_url"), "report", top=False) if day.get("report_url") else "—",
            ]
        )
    headers = ["day", "champion", "rows", "drift share / threshold", "drifted columns", "estimated ROC AUC (CBPE)"]
    headers += ["realised", "decision", "report"]
    legend = "<p class='muted'>Bars: drift share (red: a threshold crossed); line: its threshold; ⟳: retraining triggered.</p>"
    heat = "<h3>Per-column drift score (darker: nearer or over its threshold; outlined: drifted)</h3>"
    return _drift_svg(days) + legend + heat + _heat_map(days, drift["columns"]) + _table(headers, rows, "drift-days")


def _rollout(rollout: dict[str, Any] | None) -> str:
    if not rollout:
        return "<p class='muted'>No rollout in progress.</p>"
    values = {key: value for key, value in rollout.items() if key != "numbers"}
    numbers = rollout.get("numbers")
    shown = "" if numbers is None else f"<h4>Latest numbers</h4><pre>{escape(_pretty(numbers))}</pre>"
    return _key_values("Rollout", values) + shown


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)


def render_page(document: dict[str, Any]) -> str:
    """The whole page (a str of HTML) for ``document``, the Models page's JSON."""
    legend = " ".join(_badge(how) for how in HOW_COLOURS)
    notes = "".join(f"<p class='muted'>{_e(note)}</p>" for note in document.get("notes", []))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Models</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Models: {_e(document['model_name'])}</h1>"
        f"<p>Champion <b id='champion'>{_version_name(document['champion'])}</b> · previous champion "
        f"{_version_name(document['previous_champion'])} · candidate {_version_name(document['candidate'])} · "
        f"<span class='muted'>as of {_e(document['generated_at'])}</span></p>{notes}"
        f"<h2 id='champion-timeline'>Champion timeline</h2><p>{legend}</p>{_timeline(document)}"
        f"<h2 id='rollout'>Rollout in progress</h2>{_rollout(document.get('rollout'))}"
        f"<h2 id='drift'>Drift per day</h2>{_drift(document['drift'])}"
        f"<h2 id='versions'>Versions</h2>{''.join(_version(v) for v in document['versions']) or '—'}"
        f"<h2 id='rejections'>Rejected challengers</h2>{_rejections(document['rejections'])}"
        f"<script>{TOP_LINKS}</script></body></html>"
    )
