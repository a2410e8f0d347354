"""Load ``airflow_settings.yaml`` (Astro CLI format) into the local Airflow.

The file is checked in full before anything is written, so a malformed file
fails the set-up with the offending key named and leaves Airflow unchanged.
Loading uses Airflow's own ``connections/variables/pools import`` commands.
"""

from __future__ import annotations

import json
import string
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONNECTION_FIELDS = {
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_extra",
    "conn_uri",
    "conn_description",
}
POOL_FIELDS = {"pool_name", "pool_slot", "pool_description", "pool_include_deferred"}
VARIABLE_FIELDS = {"variable_name", "variable_value"}
# What the DAGs cannot run without: the tracking server's connection, and the pools their
# tasks run in (a task whose pool does not exist is never scheduled, silently). The
# retraining trigger's guarantee of one retraining at a time rests on its pool's one slot.
REQUIRED_CONNECTIONS = ("mlflow_default",)
REQUIRED_POOLS = {"gpu": None, "retrain_trigger": 1}


class SettingsError(ValueError):
    """airflow_settings.yaml is malformed; the message names the offending key."""


@dataclass
class AirflowSettings:
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)

    def apply(self, stack) -> None:
        """Import everything into the Airflow of ``stack`` (overwriting what the file defines)."""
        with tempfile.TemporaryDirectory() as tmp:
            if self.connections:
                path = Path(tmp, "connections.json")
                path.write_text(json.dumps(self.connections))
                stack.airflow("connections", "import", "--overwrite", str(path))
            if self.variables:
                path = Path(tmp, "variables.json")
                path.write_text(json.dumps(self.variables))
                stack.airflow("variables", "import", "--action-on-existing-key", "overwrite", str(path))
            if self.pools:
                path = Path(tmp, "pools.json")
                path.write_text(json.dumps(self.pools))
                stack.airflow("pools", "import", str(path))


def _expand(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        try:
            return string.Template(value).substitute(environ)
        except KeyError as missing:
            raise SettingsError(f"{where}: environment variable {missing.args[0]} is not set") from None
        except ValueError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", environ) for k, v in value.items()}
    return value


def _entries(section: Any, name: str, source: str) -> list[dict]:
    if section is None:
        return []
    if not isinstance(section, list):
        raise SettingsError(f"{source}: airflow.{name} must be a list")
    for index, entry in enumerate(section):
        if not isinstance(entry, dict):
            raise SettingsError(f"{source}: airflow.{name}[{index}] must be a mapping")
    return section


def _check_keys(entry: dict, allowed: set[str], required: str, where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    if not entry.get(required):
        raise SettingsError(f"{where}: missing key '{required}'")


def parse_settings(raw: Any, environ: Mapping[str, str], source: str = "airflow_settings.yaml") -> AirflowSettings:
    if not isinstance(raw, dict) or not isinstance(raw.get("airflow"), dict):
        raise SettingsError(f"{source}: top-level key 'airflow' (a mapping) is missing")
    body = raw["airflow"]
    unknown = sorted(set(body) - {"connections", "pools", "variables"})
    if unknown:
        raise SettingsError(f"{source}: unknown key 'airflow.{unknown[0]}'")
    settings = AirflowSettings()
    for index, entry in enumerate(_entries(body.get("connections"), "connections", source)):
        where = f"{source}: airflow.connections[{index}]"
        _check_keys(entry, CONNECTION_FIELDS, "conn_id", where)
        where = f"{source}: connection '{entry['conn_id']}'"
        if not entry.get("conn_type") and not entry.get("conn_uri"):
            raise SettingsError(f"{where}: missing key 'conn_type'")
        extra = entry.get("conn_extra")
        if extra is not None and not isinstance(extra, (dict, str)):
            raise SettingsError(f"{where}: conn_extra must be a mapping or a JSON string")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{where}: conn_extra is not valid JSON ({exc})") from None
        port = entry.get("conn_port")
        if port not in (None, "") and not str(port).isdigit():
            raise SettingsError(f"{where}: conn_port must be a number, got {port!r}")
        connection = {
            "conn_type": entry.get("conn_type"),
            "host": entry.get("conn_host"),
            "schema": entry.get("conn_schema"),
            "login": entry.get("conn_login"),
            "password": entry.get("conn_password"),
            "port": int(port) if port not in (None, "") else None,
            "extra": json.dumps(_expand(extra, f"{where}.conn_extra", environ)) if extra else None,
            "description": entry.get("conn_description"),
        }
        connection = {k: _expand(v, f"{where}.{k}", environ) for k, v in connection.items() if v is not None}
        if entry["conn_id"] in settings.connections:
            raise SettingsError(f"{where}: conn_id defined twice")
        settings.connections[entry["conn_id"]] = connection
    for index, entry in enumerate(_entries(body.get("pools"), "pools", source)):
        where = f"{source}: airflow.pools[{index}]"
        _check_keys(entry, POOL_FIELDS, "pool_name", where)
        where = f"{source}: pool '{entry['pool_name']}'"
        slots = entry.get("pool_slot")
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
            raise SettingsError(f"{where}: pool_slot must be a non-negative integer, got {slots!r}")
        settings.pools[entry["pool_name"]] = {
            "slots": slots,
            "description": entry.get("pool_description") or "",
            "include_deferred": bool(entry.get("pool_include_deferred", False)),
        }
    for index, entry in enumerate(_entries(body.get("variables"), "variables", source)):
        where = f"{source}: airflow.variables[{index}]"
        _check_keys(entry, VARIABLE_FIELDS, "variable_name", where)
        if "variable_value" not in entry:
            raise SettingsError(f"{source}: variable '{entry['variable_name']}': missing key 'variable_value'")
        value = entry["variable_value"]
        settings.variables[entry["variable_name"]] = _expand(
            value if isinstance(value, str) else json.dumps(value),
            f"{source}: variable '{entry['variable_name']}'",
            environ,
        )
    _check_required(settings, source)
    return settings


def _check_required(settings: AirflowSettings, source: str) -> None:
    for conn_id in REQUIRED_CONNECTIONS:
        if conn_id not in settings.connections:
            raise SettingsError(
                f"{source}: connection '{conn_id}' is missing from airflow.connections (the DAGs need it)"
            )
    mlflow = settings.connections["mlflow_default"]
    extra = json.loads(mlflow.get("extra") or "{}")
    if not (isinstance(extra, dict) and extra.get("tracking_uri")) and not mlflow.get("host"):
        raise SettingsError(
            f"{source}: connection 'mlflow_default': missing key 'conn_extra.tracking_uri' "
            f"(or conn_host): where the MLflow tracking server is"
        )
    for pool, slots in REQUIRED_POOLS.items():
        if pool not in settings.pools:
            raise SettingsError(
                f"{source}: pool '{pool}' is missing from airflow.pools (tasks in it would never be scheduled)"
            )
        if slots is not None and settings.pools[pool]["slots"] != slots:
            raise SettingsError(
                f"{source}: pool '{pool}': pool_slot must be {slots}, got {settings.pools[pool]['slots']}"
            )


def load_settings_file(path: Path, environ: Mapping[str, str]) -> AirflowSettings:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {exc}") from None
    return parse_settings(raw, environ, source=Path(path).name)
