"""The model card as Markdown: the JSON card (:mod:`include.reporting.model_card`) laid out for people."""

from __future__ import annotations

from typing import Any

UNKNOWN = "unknown"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_cell(number)}" for key, number in value.items()) or "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _pairs(pairs: list[tuple[str, Any]]) -> list[str]:
    return [f"- **{label}**: {_cell(value)}" for label, value in pairs] + [""]


def _intended_use(card: dict[str, Any]) -> list[str]:
    use = card["intended_use"]
    features = use["features"]
    shown = (
        ", ".join(f"{feature['name']} ({feature['type']})" for feature in features) if features != UNKNOWN else UNKNOWN
    )
    return [
        "## Intended use",
        "",
        use["description"],
        "",
        *_pairs(
            [
                ("Dataset", use["dataset"]),
                ("Task", use["task"]),
                ("Target", use["target"]),
                ("Positive class", use["positive_class"]),
                ("Slice feature", use["slice_feature"]),
                ("Features", shown),
            ]
        ),
    ]


def _training_data(card: dict[str, Any]) -> list[str]:
    data = card["training_data"]
    return [
        "## Training data",
        "",
        *_pairs(
            [
                ("Dataset", data["dataset"]),
                ("Data version (DVC md5)", data["md5"]),
                ("Data registry rev", data["rev"]),
                ("Path", data["path"]),
                ("Data registry", data["repo"]),
                ("Rows", data["rows"]),
                ("Time range", f"{data['window_start']} to {data['window_end']} (end exclusive)"),
                ("Validation passed", data["validation"]["success"]),
                ("Expectations met", data["validation"]["expectations"]),
            ]
        ),
    ]


def _evaluation(card: dict[str, Any]) -> list[str]:
    evaluation = card["evaluation"]
    if evaluation == UNKNOWN:
        return ["## Evaluation", "", "unknown: no evaluation was recorded for this version's run.", ""]
    names = [name for name in evaluation["overall"] if name != "rows"]
    rows = [["overall", evaluation["overall"].get("rows", UNKNOWN), *(evaluation["overall"][n] for n in names)]]
    rows += [
        [
            f"{evaluation['slice_feature']}={value}",
            scores.get("rows", UNKNOWN),
            *(scores.get(n, UNKNOWN) for n in names),
        ]
        for value, scores in evaluation["slices"].items()
    ]
    latency = evaluation["latency"]
    champion = evaluation["champion"]
    against = (
        "none (no champion when it was evaluated)"
        if champion == "none"
        else f"version {champion['version']}: " + _cell({k: v for k, v in champion["overall"].items() if k != "rows"})
    )
    direction = {True: "higher is better", False: "lower is better"}.get(evaluation["higher_is_better"], UNKNOWN)
    return [
        "## Evaluation",
        "",
        f"On {evaluation['holdout_rows']} held-out rows. Gate metric: **{evaluation['metric']}** ({direction}); "
        f"no-skill baseline {_cell(evaluation['baseline'])}.",
        "",
        *_table(["rows scored", "rows", *names], rows),
        *_pairs(
            [
                (
                    "Latency p50 / p95 (ms of CPU per single-row request)",
                    f"{_cell(latency['p50_ms'])} / {_cell(latency['p95_ms'])}",
                ),
                ("Latency budget (ms)", latency["budget_ms"]),
                ("Champion scored on the same rows", against),
            ]
        ),
    ]


def _gate(card: dict[str, Any]) -> list[str]:
    gate = card["gate"]
    outcome = {True: "PASSED", False: "REJECTED"}.get(gate["passed"], UNKNOWN)
    rows = [
        [
            check["name"],
            check["value"],
            check["threshold"],
            {True: "pass", False: "FAIL"}.get(check["passed"], UNKNOWN),
            check["detail"],
        ]
        for check in gate["checks"]
    ]
    return [
        "## Gate decision",
        "",
        f"**{outcome}**: {gate['reason']}",
        "",
        *_pairs(
            [
                ("Metric", gate["metric"]),
                ("Challenger score", gate["challenger_score"]),
                ("Bar (min, or max for an error metric)", gate["minimum"]),
                ("No-skill baseline", gate["baseline"]),
                ("Max regression against the champion", gate["max_regression"]),
                ("Compared with champion version", gate["compared_with_champion_version"]),
                ("Champion score", gate["champion_score"]),
                ("Latency p95 / budget (ms)", f"{_cell(gate['latency_p95_ms'])} / {_cell(gate['latency_budget_ms'])}"),
            ]
        ),
        *(_table(["check", "value", "threshold", "result", "detail"], rows) if rows else ["No checks recorded.", ""]),
    ]


def _importance(card: dict[str, Any]) -> list[str]:
    importance = card["feature_importance"]
    if importance["status"] != "computed":
        return ["## Feature importance", "", f"unknown: {importance['reason']}", ""]
    rows = [[row["feature"], row["importance_mean"], row["importance_std"]] for row in importance["features"]]
    return [
        "## Feature importance",
        "",
        f"{importance['method']}: how much {importance['scorer']} worsens when the feature is shuffled "
        f"({importance['n_repeats']} repeats, seed {importance['random_state']}, {importance['rows']} rows; "
        f"unshuffled {importance['scorer']} {_cell(importance['baseline_score'])}).",
        "",
        *_table(["feature", "importance (mean)", "std"], rows),
    ]


def _limits(card: dict[str, Any]) -> list[str]:
    limits = card["limits"]
    drift = limits["drift"]
    lines = ["## Known limits", "", f"Drift history: {drift['summary']}.", ""]
    crossings = drift.get("windows_over_threshold") or []
    if crossings:
        lines += _table(
            ["window start", "window end", "drift share", "threshold", "drifted columns", "why"],
            [
                [
                    window["window_start"],
                    window["window_end"],
                    window["drift_share"],
                    window["drift_share_threshold"],
                    window["drifted_columns"],
                    "; ".join(window["reasons"]),
                ]
                for window in crossings
            ],
        )
    lines += [f"- {note}" for note in limits["evaluation_notes"]]
    return [*lines, ""] if limits["evaluation_notes"] else lines


def render_markdown(card: dict[str, Any]) -> str:
    """The card (:func:`include.reporting.model_card.build_card`'s dict) as a Markdown document (a str)."""
    model = card["model"]
    lines = [
        f"# Model card: {model['name']} version {model['version']}",
        "",
        "Values the stores do not hold are written `unknown`; `none` means the thing does not exist.",
        "",
        *_pairs(
            [
                ("Model URI", model["model_uri"]),
                ("MLflow run", model["run_id"]),
                ("Registered at", model["registered_at"]),
                ("Model type", model["model_type"]),
                ("Code commit", model["code_git_commit"]),
                ("Training image / device", f"{model['training_image']} / {model['training_device']}"),
                ("Airflow run", f"{model['airflow_dag_id']} / {model['airflow_run_id']}"),
            ]
        ),
        *_intended_use(card),
        *_training_data(card),
        *_evaluation(card),
        *_gate(card),
        *_importance(card),
        *_limits(card),
    ]
    return "\n".join(lines).rstrip() + "\n"
