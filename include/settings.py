"""Where things live, read from the environment: one ``pydantic-settings`` model.

One object describes both profiles: the local profile keeps everything under
``MLOPS_HOME`` (``.local/`` in the checkout), the kubernetes profile points the
same names at a tracking server, an object store and a git remote. Its nested
``serving`` section (:class:`ServingSettings`) holds the ``MLOPS_SERVING_*`` variables;
the fields it shares with the kubernetes serving configuration are declared once,
in :class:`ServingFields`.

Values come from the environment (or an explicit mapping in tests) and, above it,
from explicit ``overrides`` (e.g. Airflow Variables and connections read by a task):
nothing is ever written back into ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, InitSettingsSource, SettingsConfigDict

from include.util.text import parse_bool

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "kubernetes")


class _MappingEnvSource(EnvSettingsSource):
    """The environment source of pydantic-settings, reading ``environ`` instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name if self.case_sensitive else name.lower(): value for name, value in self._environ.items()}


def _build(cls: type[BaseSettings], environ: Mapping[str, str] | None, overrides: Mapping[str, Any]) -> Any:
    """``cls`` from ``overrides`` over ``environ`` (``os.environ`` when None) over its defaults.

    Raises ``ValueError`` with the messages of every invalid value (each names its variable).
    """
    env = os.environ if environ is None else environ
    init = dict(overrides)
    sources = (InitSettingsSource(cls, init_kwargs=init), _MappingEnvSource(cls, env))
    try:
        return cls(_build_sources=(sources, init))
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def validation_message(error: ValidationError) -> str:
    """The messages of every error in ``error``, joined by "; " (a str).

    A ``ValueError`` raised by a validator here already names its variable and is given as it
    is; pydantic's own errors (a wrong type) are given as ``field: message``.
    """
    return "; ".join(_message(detail) for detail in error.errors())


def _message(error: Mapping[str, Any]) -> str:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError):
        return str(cause)  # ours: it names the variable already
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg')}"


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ServingFields(BaseModel):
    """The kubernetes serving objects' settings (see include.deployment.serving_config), declared once.

    :class:`ServingSettings` reads each from its ``MLOPS_SERVING_*`` variable: the field name
    is the variable's suffix, lower case, unless the field names its variable as its alias.
    ``include.deployment.serving_config.ServingConfig`` adds what the variables do not set and
    checks what the values mean together.
    """

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    namespace: str = "ml-serving"
    image: str = "ghcr.io/example/churn-serving:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secret: str | None = None
    name: str | None = None  # None: a DNS-safe name from the model name
    replicas: int = 2
    hpa_enabled: bool = Field(False, validation_alias="MLOPS_SERVING_HPA")
    min_replicas: int | None = None  # None: replicas
    max_replicas: int | None = None  # None: 3 x the minimum
    cpu_target_percent: int = Field(70, validation_alias="MLOPS_SERVING_CPU_TARGET")
    cpu_request: str = "500m"
    cpu_limit: str | None = "2"
    memory_request: str = "1Gi"
    memory_limit: str | None = "2Gi"
    tmp_size: str = "2Gi"
    tracking_uri: str | None = None
    tracking_configmap: str | None = Field(None, validation_alias="MLOPS_SERVING_CONFIGMAP")
    credentials_secret: str | None = Field("mlops-serving-credentials", validation_alias="MLOPS_SERVING_SECRET")
    service_account: str | None = None
    inference_log: str | None = None  # an object-store URL
    progress_deadline_seconds: int = Field(300, validation_alias="MLOPS_SERVING_PROGRESS_DEADLINE")
    url: str | None = None  # None: the Service's cluster DNS name
    cluster_domain: str = "cluster.local"


# How a set but empty (or blank) serving variable reads: as the field's default, or as none
_EMPTY_IS_DEFAULT = (
    "namespace",
    "image",
    "image_pull_policy",
    "cpu_request",
    "memory_request",
    "tmp_size",
    "cluster_domain",
    "host",
)
_EMPTY_IS_NONE = (
    "image_pull_secret",
    "name",
    "cpu_limit",
    "memory_limit",
    "tracking_configmap",
    "credentials_secret",
    "service_account",
    "url",
)
# read from text as whole numbers (an empty one is the default, too)
_WHOLE_NUMBERS = ("replicas", "min_replicas", "max_replicas", "cpu_target_percent", "progress_deadline_seconds", "port")


class ServingSettings(ServingFields, BaseSettings):
    """The ``MLOPS_SERVING_*`` variables: the local model server's address, and the serving objects' fields.

    Text is stripped; for ``namespace``, ``image``, ``image_pull_policy``, ``cpu_request``,
    ``memory_request``, ``tmp_size``, ``cluster_domain`` and the numbers an empty value means
    the default, for the other texts it means none. ``tracking_uri`` and ``inference_log`` are
    None when unset (the main settings' values apply) and ``""`` when set empty (none). What
    the values mean together is checked by ``include.deployment.serving_config.ServingConfig``.
    """

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_SERVING_", frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    # the local model server
    host: str = "127.0.0.1"
    port: int = 5080

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> ServingSettings:
        """The serving section from ``overrides`` (field names to values) over ``environ`` (``os.environ`` when None).

        Returns the section. Raises ``ValueError`` naming the variable and its value when a
        number or a flag cannot be read.
        """
        return _build(cls, environ, overrides or {})

    @field_validator(*_EMPTY_IS_DEFAULT, mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info) -> Any:
        value = _text(value)
        return cls.model_fields[info.field_name].default if value in ("", None) else value

    @field_validator(*_EMPTY_IS_NONE, mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        value = _text(value)
        return value or None

    @field_validator("tracking_uri", "inference_log", mode="before")
    @classmethod
    def _stripped(cls, value: Any) -> Any:
        return _text(value)

    @field_validator(*_WHOLE_NUMBERS, mode="before")
    @classmethod
    def _whole_number(cls, value: Any, info) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return cls.model_fields[info.field_name].default
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{cls._variable(info.field_name)}={value.strip()!r} is not a whole number") from None

    @field_validator("hpa_enabled", mode="before")
    @classmethod
    def _flag(cls, value: Any, info) -> Any:
        name = cls._variable(info.field_name)
        try:
            return parse_bool("" if value is None else value, name)
        except ValueError:
            raise ValueError(f"{name}={str(value).strip().lower()!r} is not true or false") from None

    @classmethod
    def _variable(cls, field_name: str) -> str:
        alias = cls.model_fields[field_name].validation_alias
        return alias if isinstance(alias, str) else f"MLOPS_SERVING_{field_name.upper()}"


class Settings(BaseSettings):
    """Where things live, for one profile.

    Each field is read from ``MLOPS_<FIELD>`` (``tracking_uri`` from ``MLFLOW_TRACKING_URI``);
    fields left unset default to places under ``home``. Build it with :meth:`from_env`.
    """

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    profile: str = "local"
    home: Path = PROJECT_ROOT / ".local"
    tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")  # None: sqlite under home
    artifact_root: str | None = None  # None in the local profile: a folder under home
    model_name: str = "customer_churn"
    dataset_spec: Path = PROJECT_ROOT / "include/datasets/customer_churn.yaml"
    data_registry: str | None = None
    # kubernetes profile: a git URL the training pods can read the registry from
    data_registry_remote: str | None = None
    dvc_remote: str | None = None
    # a local folder or any fsspec URL (s3://bucket/prefix, gs://...)
    inference_log: str | None = None
    reports: str | None = None
    # what serialises promotions (see include.registry.promotion_lock): a PostgreSQL URL or a file
    promotion_lock: str | None = None
    # which alerts were sent (see include.alerts.ledger): a SQLAlchemy URL every worker reaches
    alert_ledger: str | None = None
    serving: ServingSettings = Field(default_factory=ServingSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings from ``overrides`` over ``environ`` (``os.environ`` when None) over the defaults.

        ``overrides`` maps field names to values (an Airflow connection's tracking URI, say);
        its ``serving`` entry, a mapping, overrides fields of the serving section the same way.

        Returns the settings. Raises ``ValueError`` naming the variable when ``MLOPS_PROFILE``
        is not a known profile or a value (``MLOPS_SERVING_PORT``, ``MLOPS_SERVING_REPLICAS``...)
        cannot be read.
        """
        overrides = dict(overrides or {})
        serving = overrides.pop("serving", None)
        if not isinstance(serving, ServingSettings):
            serving = ServingSettings.from_env(environ, serving)
        return _build(cls, environ, {**overrides, "serving": serving})

    @field_validator("profile", mode="after")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        if profile not in PROFILES:
            raise ValueError(f"MLOPS_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
        return profile

    @model_validator(mode="after")
    def _derived_defaults(self) -> Settings:
        # fills what defaults to places under home; the model is frozen, so straight into its fields
        home = self.home.resolve()
        tracking_uri = self.tracking_uri if self.tracking_uri is not None else f"sqlite:///{home}/mlflow/mlflow.db"
        spec = self.dataset_spec if self.dataset_spec.is_absolute() else PROJECT_ROOT / self.dataset_spec
        artifact_root = self.artifact_root
        if artifact_root is None and self.profile == "local":
            artifact_root = (home / "mlflow" / "artifacts").as_uri()
        self.__dict__.update(
            home=home,
            tracking_uri=tracking_uri,
            artifact_root=artifact_root,
            dataset_spec=spec,
            data_registry=_or(self.data_registry, home / "data-registry"),
            data_registry_remote=self.data_registry_remote or None,
            dvc_remote=_or(self.dvc_remote, home / "dvc-remote"),
            inference_log=_or(self.inference_log, home / "inference-log"),
            reports=_or(self.reports, home / "reports"),
            promotion_lock=self.promotion_lock or _default_promotion_lock(tracking_uri, home),
            alert_ledger=self.alert_ledger or _default_alert_ledger(tracking_uri, home),
        )
        return self

    @property
    def serving_host(self) -> str:
        """The local model server's address (``MLOPS_SERVING_HOST``)."""
        return self.serving.host

    @property
    def serving_port(self) -> int:
        """The local model server's port (``MLOPS_SERVING_PORT``)."""
        return self.serving.port

    @property
    def serving_url(self) -> str:
        """``http://<serving_host>:<serving_port>``, the local model server's URL."""
        return f"http://{self.serving_host}:{self.serving_port}"

    def path(self, *parts: str) -> Path:
        """A path under the local state folder (validation results, serving logs...)."""
        return self.home.joinpath(*parts)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (field names to values), checked again. Raises ``ValueError`` as :meth:`from_env`."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return _build(type(self), {}, {**values, **changes})


def _or(value: str | None, default: Path) -> str:
    return value if value is not None else str(default)


def url_scheme(url: str) -> str:
    """The database or protocol of ``url`` without its driver (``postgresql+psycopg2://`` -> ``postgresql``);
    empty for a plain path."""
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""


def is_postgres_url(url: str) -> bool:
    """True when ``url`` names a PostgreSQL database (any driver), False otherwise; never raises."""
    return url_scheme(url) in ("postgresql", "postgres")


def _default_promotion_lock(tracking_uri: str, home: Path) -> str:
    """The tracking store's own PostgreSQL database when MLflow talks to one directly (every
    writer reaches it), else a file under the local state folder (writers on this machine)."""
    if is_postgres_url(tracking_uri):
        return tracking_uri
    return str(home / "locks" / "promotion.lock")


def _default_alert_ledger(tracking_uri: str, home: Path) -> str:
    """Like the promotion lock: the tracking store's PostgreSQL database when MLflow talks to one
    directly, else a SQLite file under the local state folder."""
    if is_postgres_url(tracking_uri):
        return tracking_uri
    return f"sqlite:///{home / 'alerts' / 'sent.db'}"
