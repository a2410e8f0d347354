"""A client of Airflow's REST API v2: the few calls the demo, the tests and the benchmarks make.

It logs in once (``POST /auth/token``) and sends each call with the bearer token.
On the local profile's SQLite, Airflow may answer 503 "database is locked"; it has
undone what the request began by then, so :meth:`AirflowClient.call` sends the
same request again after waits of :data:`LOCKED_RETRY_DELAYS` seconds.
"""

from __future__ import annotations

import time

import requests

from include.util.wait import wait_until

LOCKED_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


def _database_locked(response: requests.Response) -> bool:
    return response.status_code == 503 and "database is locked" in response.text.lower()


class AirflowClient:
    """The few REST API v2 calls the demo and the tests need."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        response = requests.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, f"{self.base_url}/api/v2{path}", **kwargs)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.request(method, path, **kwargs)
        for delay in LOCKED_RETRY_DELAYS:
            if not _database_locked(response):
                break
            # Airflow answers 503 when its SQLite database stayed locked, after undoing what the
            # request had begun (a half-created backfill included), so the same request is safe again.
            time.sleep(delay)
            response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else {}

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; fail fast on an import error."""

        def parsed() -> dict | None:
            response = self.request("GET", f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            errors = self.call("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
            return None

        return wait_until(parsed, timeout, interval=2, what=f"DAG {dag_id} not parsed")

    def create_backfill(self, dag_id: str, from_date: str, to_date: str, **options) -> dict:
        """``POST /backfills`` while ``dag_id`` is paused, then unpause it so that the runs start.

        Airflow commits a backfill's runs one at a time as it creates them. On SQLite, a
        scheduler already working on the first runs competes with the creation of the next
        for the write lock; when the creation loses, Airflow deletes the runs it made from
        under the scheduler, and the scheduler stops. The scheduler leaves a paused DAG's
        runs alone, so nothing competes while the backfill is created.
        """
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
        try:
            return self.call(
                "POST", "/backfills", json={"dag_id": dag_id, "from_date": from_date, "to_date": to_date, **options}
            )
        finally:
            self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        body = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").get("task_instances", [])
