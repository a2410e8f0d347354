"""Where things live, read from the environment.

One object describes both profiles: the local profile keeps everything under
``MLOPS_HOME`` (``.local/`` in the checkout), the kubernetes profile points the
same names at a tracking server, an object store and a git remote.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "kubernetes")


@dataclass(frozen=True)
class Settings:
    profile: str
    home: Path
    tracking_uri: str
    artifact_root: str | None
    model_name: str
    dataset_spec: Path
    data_registry: str
    data_registry_remote: str | None
    dvc_remote: str
    serving_host: str
    serving_port: int
    inference_log: str
    reports: str
    # what serialises promotions (see include.registry.promotion_lock): a PostgreSQL URL or a file
    promotion_lock: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        profile = env.get("MLOPS_PROFILE", "local")
        if profile not in PROFILES:
            raise ValueError(f"MLOPS_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
        home = Path(env.get("MLOPS_HOME", PROJECT_ROOT / ".local")).resolve()
        artifact_root = env.get("MLOPS_ARTIFACT_ROOT")
        if artifact_root is None and profile == "local":
            artifact_root = (home / "mlflow" / "artifacts").as_uri()
        tracking_uri = env.get("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
        spec = Path(env.get("MLOPS_DATASET_SPEC", PROJECT_ROOT / "include/datasets/customer_churn.yaml"))
        if not spec.is_absolute():
            spec = PROJECT_ROOT / spec
        return cls(
            profile=profile,
            home=home,
            tracking_uri=tracking_uri,
            artifact_root=artifact_root,
            model_name=env.get("MLOPS_MODEL_NAME", "customer_churn"),
            dataset_spec=spec,
            data_registry=env.get("MLOPS_DATA_REGISTRY", str(home / "data-registry")),
            # kubernetes profile: a git URL the training pods can read the registry from
            data_registry_remote=env.get("MLOPS_DATA_REGISTRY_REMOTE") or None,
            dvc_remote=env.get("MLOPS_DVC_REMOTE", str(home / "dvc-remote")),
            serving_host=env.get("MLOPS_SERVING_HOST", "127.0.0.1"),
            serving_port=int(env.get("MLOPS_SERVING_PORT", "5080")),
            # a local folder or any fsspec URL (s3://bucket/prefix, gs://...)
            inference_log=env.get("MLOPS_INFERENCE_LOG", str(home / "inference-log")),
            reports=env.get("MLOPS_REPORTS", str(home / "reports")),
            promotion_lock=env.get("MLOPS_PROMOTION_LOCK") or _default_promotion_lock(tracking_uri, home),
        )

    @property
    def serving_url(self) -> str:
        return f"http://{self.serving_host}:{self.serving_port}"

    def path(self, *parts: str) -> Path:
        """A path under the local state folder (validation results, serving logs...)."""
        return self.home.joinpath(*parts)


def url_scheme(url: str) -> str:
    """The database or protocol of ``url`` without its driver (``postgresql+psycopg2://`` -> ``postgresql``);
    empty for a plain path."""
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""


def is_postgres_url(url: str) -> bool:
    return url_scheme(url) in ("postgresql", "postgres")


def _default_promotion_lock(tracking_uri: str, home: Path) -> str:
    """The tracking store's own PostgreSQL database when MLflow talks to one directly (every
    writer reaches it), else a file under the local state folder (writers on this machine)."""
    if is_postgres_url(tracking_uri):
        return tracking_uri
    return str(home / "locks" / "promotion.lock")
