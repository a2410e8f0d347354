"""Optional human approval before a deploy (Airflow's human-in-the-loop ``ApprovalOperator``).

Switched on by the Variable ``deploy_approval_required`` (read at run time by the
``approval_required`` branch). Whoever answers, when, and their comment are tagged
on the model version either way; a rejection skips ``deploy``, so nothing is deployed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

APPROVAL_VARIABLE = "deploy_approval_required"


class DeployApprovalOperator(ApprovalOperator):
    def __init__(self, *, version_task_id: str, **kwargs):
        kwargs.setdefault("response_timeout", timedelta(days=2))
        # the DAG's own params reach every task; the approval form shows only its own
        kwargs.pop("params", None)
        super().__init__(
            subject="Deploy {{ ti.xcom_pull(task_ids='" + version_task_id + "') }} of the churn model?",
            body=(
                "The challenger passed the gate:\n\n"
                "{{ ti.xcom_pull(task_ids='gate', key='decision')['reason'] }}\n\n"
                "Approve to serve it and make it the champion; reject to keep the current champion."
            ),
            params={
                "comment": Param(
                    "",
                    type="string",
                    maxLength=1000,
                    description="Why you approve or reject; recorded on the model version.",
                )
            },
            **kwargs,
        )
        self.version_task_id = version_task_id

    def execute(self, context) -> Any:
        # the question is asked now: the alert says who must answer what, before the task waits
        from mlops_airflow.alerts import alert_approval_waiting

        ti = context["ti"]
        decision = ti.xcom_pull(task_ids="gate", key="decision") or {}
        alert_approval_waiting(ti.xcom_pull(task_ids=self.version_task_id), decision.get("reason"), context)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        # Recorded before the parent acts on the answer: on "Reject" it skips the
        # downstream tasks by raising, so nothing after it would run.
        if "error" not in event:
            self._record(context, event)
        return super().execute_complete(context=context, event=event)

    def _record(self, context, event: dict[str, Any]) -> None:
        from include import registry, tracking
        from mlops_airflow.runtime import task_settings

        settings = task_settings()
        tracking.configure(settings)
        version = context["ti"].xcom_pull(task_ids=self.version_task_id)
        responder = event.get("responded_by_user") or {}
        approved = list(event.get("chosen_options") or []) == [self.APPROVE]
        responded_at = event.get("responded_at")
        registry.set_version_tags(
            settings.model_name,
            version,
            {
                "approval.decision": "approved" if approved else "rejected",
                "approval.by": responder.get("name") or responder.get("id") or "unknown",
                "approval.at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else str(responded_at),
                "approval.comment": (event.get("params_input") or {}).get("comment", ""),
            },
        )
        self.log.info(
            "deploy of version %s %s by %s", version, "approved" if approved else "REJECTED", responder.get("name")
        )
