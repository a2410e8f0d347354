"""The alert receivers as airflow_settings.yaml documents them."""

from __future__ import annotations

import json


def test_the_receiver_examples_in_airflow_settings_load_as_connections(tmp_path):
    """The commented receivers of airflow_settings.yaml, switched on, are valid Astro-format connections."""
    import re

    from mlops_airflow.alerts import RECEIVER_CONN_IDS
    from scripts.airflow_settings import load_settings_file
    from tests.conftest import PROJECT_ROOT

    text = (PROJECT_ROOT / "airflow_settings.yaml").read_text()
    start, end = text.index("    # - conn_id: alerts_webhook"), text.index("  pools:")
    examples = re.sub(r"^    # (- conn_id: alerts_|  )", r"    \1", text[start:end], flags=re.MULTILINE)
    switched_on = text[:start] + examples + text[end:]
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(switched_on)
    environ = {"MLOPS_HOME": str(tmp_path), "SLACK_WEBHOOK_TOKEN": "T0/B0/x", "SMTP_PASSWORD": "p"}
    connections = load_settings_file(path, environ).connections
    assert set(RECEIVER_CONN_IDS) <= set(connections)
    assert json.loads(connections["alerts_email"]["extra"])["to"] == "ml-oncall@example.com"
