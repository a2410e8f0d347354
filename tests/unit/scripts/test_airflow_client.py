"""The REST client of the demo and the end-to-end tests, against a small local HTTP server.

Airflow answers 503 "Database is locked" when its SQLite database stayed locked, after undoing
what the request had begun; the client sends the same request again. Other errors surface at once.
A backfill is created while its DAG is paused, and the DAG is unpaused afterwards, whatever
the answer.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts import airflow_client
from scripts.airflow_client import AirflowClient

LOCKED = {
    "detail": "Database is locked. Backfill creation is not supported on SQLite under concurrent access. "
    "Please use PostgreSQL or MySQL."
}


class ScriptedAirflow:
    """Answers each ``POST /api/v2/backfills`` with the next scripted (status, body), and a
    ``PATCH`` of a DAG with its new state; records every call after the log-in."""

    def __init__(self, answers: list[tuple[int, dict]]):
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self._body()
                if self.path == "/auth/token":
                    self._answer(201, {"access_token": "token"})
                    return
                assert self.headers["Authorization"] == "Bearer token"
                outer.calls.append(("POST", self.path, body))
                self._answer(*outer.answers.pop(0))

            def do_PATCH(self):  # noqa: N802
                body = self._body()
                outer.calls.append(("PATCH", self.path, body))
                self._answer(200, {"dag_id": self.path.rsplit("/", 1)[-1], **body})

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def bodies(self) -> list[dict]:
        return [body for method, _, body in self.calls if method == "POST"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(airflow_client, "LOCKED_RETRY_DELAYS", (0.01, 0.01, 0.01))


BACKFILL = {
    "dag_id": "drift_monitor",
    "from_date": "2026-11-17T00:00:00+00:00",
    "to_date": "2026-11-20T00:00:00+00:00",
    "max_active_runs": 1,
}


def test_a_locked_database_is_asked_again_with_the_same_request():
    with ScriptedAirflow([(503, LOCKED), (503, LOCKED), (201, {"id": 7})]) as airflow:
        created = AirflowClient(airflow.url, "admin", "pw").call("POST", "/backfills", json=BACKFILL)
    assert created == {"id": 7}
    assert airflow.bodies == [BACKFILL] * 3


def test_a_database_locked_past_every_retry_names_the_lock():
    with ScriptedAirflow([(503, LOCKED)] * 4) as airflow:
        with pytest.raises(RuntimeError, match=r"POST /backfills -> 503: .*Database is locked"):
            AirflowClient(airflow.url, "admin", "pw").call("POST", "/backfills", json=BACKFILL)
    assert len(airflow.bodies) == 4, "one request and one per retry delay"


@pytest.mark.parametrize(
    "status, body",
    [
        (503, {"detail": "scheduler unavailable"}),
        (409, {"detail": "There is already a running backfill for dag drift_monitor"}),
        (400, {"detail": "max_active_runs must be positive"}),
    ],
)
def test_other_errors_are_not_retried(status, body):
    with ScriptedAirflow([(status, body), (201, {"id": 8})]) as airflow:
        with pytest.raises(RuntimeError, match=f"POST /backfills -> {status}: .*{body['detail'][:20]}"):
            AirflowClient(airflow.url, "admin", "pw").call("POST", "/backfills", json=BACKFILL)
    assert len(airflow.bodies) == 1


@pytest.mark.parametrize("answer", [(201, {"id": 9}), (409, {"detail": "There is already a running backfill"})])
def test_a_backfill_is_created_while_its_dag_is_paused_and_the_dag_is_unpaused_after(answer):
    with ScriptedAirflow([answer]) as airflow:
        client = AirflowClient(airflow.url, "admin", "pw")
        if answer[0] < 400:
            assert client.create_backfill(
                "drift_monitor", BACKFILL["from_date"], BACKFILL["to_date"], max_active_runs=1
            ) == {"id": 9}
        else:
            with pytest.raises(RuntimeError, match="409"):
                client.create_backfill("drift_monitor", BACKFILL["from_date"], BACKFILL["to_date"], max_active_runs=1)
    assert airflow.calls == [
        ("PATCH", "/api/v2/dags/drift_monitor", {"is_paused": True}),
        ("POST", "/api/v2/backfills", BACKFILL),
        ("PATCH", "/api/v2/dags/drift_monitor", {"is_paused": False}),
    ]
