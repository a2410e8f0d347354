"""The admin routes (only on a server with ``enable_admin``: loopback, no authentication).

- ``POST /admin/reload`` ``{"version": "4"}``: serve that version alone from now on (any rollout ends);
- ``GET /admin/rollout``: ``{"champion_version", "candidate_version", "mode", "canary_share",
  "sticky_column"}`` (``candidate_version``, ``mode`` and ``sticky_column`` null and the share 0.0
  without a rollout);
- ``POST /admin/rollout`` ``{"candidate_version": "5", "mode": "canary", "canary_share": 0.05,
  "sticky_column": "customer_id"}``: load the candidate beside the champion (which keeps answering
  meanwhile) and start the rollout; re-posting the running candidate only changes the mode, share
  or sticky column, with no reload. 200 with the ``GET`` shape; 400/422 for a bad body, 409 while
  another reload or rollout change runs, 500 ``ROLLOUT_FAILED`` when the candidate cannot be loaded
  (what ran before keeps running);
- ``DELETE /admin/rollout``: drop the candidate; the champion answers alone. 200 with the ``GET`` shape.

The rollout itself (routing, shadow scoring) is :mod:`include.serving.rollout`.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from include.deployment.rollout_config import RolloutConfig
from include.registry import model_uri, validate_version
from include.serving.answer import error_response, json_response
from include.serving.model import load_served_model
from include.serving.request import RequestRejected, parse_json, read_body
from include.serving.rollout import Rollout

logger = logging.getLogger(__name__)

# an admin body is one small JSON object ({"version": "4"})
_ADMIN_MAX_BODY_BYTES = 64 * 1024


def rollout_body(state) -> dict:
    """What ``GET /admin/rollout`` answers for the app's serving ``state``."""
    served, rollout = state.served, state.rollout
    champion = served.version if served is not None else None
    if rollout is None:
        return {
            "champion_version": champion,
            "candidate_version": None,
            "mode": None,
            "canary_share": 0.0,
            "sticky_column": None,
        }
    return rollout.as_json(champion)


async def get_rollout(request: Request) -> Response:
    """``GET /admin/rollout``: 200 with the rollout that runs (see the module docstring)."""
    return json_response(rollout_body(request.app.state.serving), 200)


async def delete_rollout(request: Request) -> Response:
    """``DELETE /admin/rollout``: the champion answers alone from now on; 200 with the ``GET`` shape."""
    state = request.app.state.serving
    if not state.reload_lock.acquire(blocking=False):
        return error_response(409, "RELOAD_IN_PROGRESS", "a reload or rollout change is in progress; retry later")
    try:
        ended, state.rollout = state.rollout, None
        if ended is not None:
            logger.info("rollout of version %s ended: the champion answers alone", ended.config.candidate_version)
        return json_response(rollout_body(state), 200)
    finally:
        state.reload_lock.release()


async def post_rollout(request: Request) -> Response:
    """``POST /admin/rollout``: start or change the rollout (see the module docstring). Never raises."""
    state = request.app.state.serving
    try:
        payload = parse_json(await read_body(request, _ADMIN_MAX_BODY_BYTES))
        if not isinstance(payload, dict):
            raise RequestRejected(400, "BAD_REQUEST", 'expected a JSON object such as {"candidate_version": "5", ...}')
        if payload.get("candidate_version") is None:
            raise RequestRejected(422, "INVALID_ROLLOUT", "candidate_version is required")
        config = RolloutConfig.from_json(payload)
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message)
    except ValueError as exc:
        return error_response(422, "INVALID_ROLLOUT", str(exc))
    if not state.reload_lock.acquire(blocking=False):
        return error_response(409, "RELOAD_IN_PROGRESS", "a reload or rollout change is in progress; retry later")
    try:
        champion = state.served
        if champion is None:
            return error_response(503, "UNAVAILABLE", "no model is loaded")
        if config.candidate_version == champion.version:
            return error_response(
                422, "INVALID_ROLLOUT", f"version {config.candidate_version} is the champion; a candidate must differ"
            )
        current = state.rollout
        if current is not None and current.config.candidate_version == config.candidate_version:
            state.rollout = Rollout(config, current.candidate)  # the loaded candidate is kept: no reload
        else:
            try:
                candidate = await run_in_threadpool(
                    load_served_model, state.model_name, config.candidate_version, state.tracking_uri
                )
            except Exception as exc:
                logger.exception(
                    "could not load the candidate %s", model_uri(state.model_name, config.candidate_version)
                )
                return json_response(
                    {
                        "error_code": "ROLLOUT_FAILED",
                        "message": f"could not load {model_uri(state.model_name, config.candidate_version)}: "
                        f"{type(exc).__name__}: {exc}; the rollout is unchanged",
                        **rollout_body(state),
                    },
                    500,
                )
            state.rollout = Rollout(config, candidate)
        logger.info("rollout: %s", config)
        return json_response(rollout_body(state), 200)
    finally:
        state.reload_lock.release()


async def reload(request: Request) -> Response:
    """``POST /admin/reload`` with ``{"version": "4"}``: serve that version alone from now on (any rollout
    ends; a rollout's candidate is not loaded again). Returns a JSON Response:
    200 ``{"status": "ok", "model_name", "model_version", "previous_version"}`` once the
    new version answers (at once when it already does); 400/422 for a bad body or
    version, 409 while another reload runs, 500 ``RELOAD_FAILED`` when the version
    cannot be loaded, in which case the previous version keeps answering. Never raises.
    """
    state = request.app.state.serving
    model_name = state.model_name
    try:
        payload = parse_json(await read_body(request, _ADMIN_MAX_BODY_BYTES))
        if not isinstance(payload, dict) or "version" not in payload:
            raise RequestRejected(400, "BAD_REQUEST", 'expected a JSON object such as {"version": "4"}')
        new_version = validate_version(payload["version"])
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message)
    except ValueError as exc:
        return error_response(422, "INVALID_VERSION", str(exc))
    if not state.reload_lock.acquire(blocking=False):
        return error_response(409, "RELOAD_IN_PROGRESS", "another reload is in progress; retry when it is done")
    try:
        previous = state.served
        if previous is not None and previous.version == new_version and state.rollout is None:
            return json_response(
                {
                    "status": "ok",
                    "model_name": model_name,
                    "model_version": new_version,
                    "previous_version": new_version,
                },
                200,
                new_version,
            )
        rollout = state.rollout
        if previous is not None and previous.version == new_version:
            loaded = previous  # only the rollout ends
        elif rollout is not None and rollout.candidate.version == new_version:
            loaded = rollout.candidate  # a promoted candidate is already loaded
        else:
            loaded = None
        try:
            # loading takes seconds: a worker thread keeps the old version answering meanwhile
            if loaded is None:
                loaded = await run_in_threadpool(load_served_model, model_name, new_version, state.tracking_uri)
        except Exception as exc:
            logger.exception("reload to %s failed", model_uri(model_name, new_version))
            kept = previous.version if previous else None
            return json_response(
                {
                    "error_code": "RELOAD_FAILED",
                    "message": f"could not load {model_uri(model_name, new_version)}: "
                    f"{type(exc).__name__}: {exc}; still serving version {kept}",
                    "model_version": kept,
                },
                500,
                kept,
            )
        # one reference assignment: requests already running keep the ServedModel they read; the
        # version reloaded to answers alone, so any rollout ends with it
        state.served, ended = loaded, state.rollout
        state.rollout = None
        if ended is not None:
            logger.info("the rollout of version %s ended with the reload", ended.config.candidate_version)
        logger.info(
            "reloaded: now serving %s (was version %s)",
            model_uri(model_name, new_version),
            previous.version if previous else None,
        )
        return json_response(
            {
                "status": "ok",
                "model_name": model_name,
                "model_version": new_version,
                "previous_version": previous.version if previous else None,
            },
            200,
            new_version,
        )
    finally:
        state.reload_lock.release()
