"""Serve one registered model version: ``python -m include.serving --version 3``.

The tracking URI comes from the environment (``Settings.from_env``), as in every
other step. The server binds to the loopback interface unless ``--allow-remote``
is given; the unauthenticated ``/admin/reload`` endpoint only exists on loopback.

Every answered row goes to the inference log at ``--inference-log`` (default: the
settings' ``inference_log``, ``MLOPS_INFERENCE_LOG``), unless ``--no-inference-log``;
rows are buffered and written in the background, and the rest on shutdown (SIGTERM).

A rollout starts with the server: ``--candidate-version 5 --rollout-mode canary
--canary-share 0.05 --sticky-column customer_id`` serves version 5 beside ``--version``
(:mod:`include.serving.rollout`); ``--rollout-mode shadow`` only logs its predictions.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from include.settings import Settings
from include.training import TORCH_THREADS_ENV
from include.util.net import is_loopback


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    """The server's command-line options, parsed against ``settings``' defaults: an ``argparse.Namespace``.

    A bad option exits through ``argparse`` (``SystemExit`` with status 2).
    """
    from include.monitoring.inference_log import DEFAULT_FLUSH_ROWS, DEFAULT_FLUSH_SECONDS
    from include.serving.app import (
        DEFAULT_BATCH_MAX_ROWS,
        DEFAULT_BATCH_MAX_WAIT_MS,
        DEFAULT_MAX_BODY_BYTES,
        DEFAULT_MAX_ROWS,
    )
    from include.serving.batching import MAX_BATCH_WAIT_SECONDS

    parser = argparse.ArgumentParser(prog="python -m include.serving", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-name", default=settings.model_name, help=f"registered model name (default: {settings.model_name})"
    )
    parser.add_argument("--version", required=True, help="registered model version to serve, e.g. 3")
    parser.add_argument("--host", default=settings.serving_host, help=f"default: {settings.serving_host}")
    parser.add_argument("--port", type=int, default=settings.serving_port, help=f"default: {settings.serving_port}")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a host other than loopback (this also disables /admin/reload)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        help=f"most rows accepted in one request (default: {DEFAULT_MAX_ROWS})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest request body accepted (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    logged = parser.add_mutually_exclusive_group()
    logged.add_argument(
        "--inference-log",
        default=settings.inference_log,
        metavar="ROOT",
        help=f"folder or fsspec URL (s3://bucket/prefix) to log predictions to (default: {settings.inference_log})",
    )
    logged.add_argument("--no-inference-log", action="store_true", help="do not log predictions")
    parser.add_argument(
        "--inference-log-flush-rows",
        type=int,
        default=DEFAULT_FLUSH_ROWS,
        metavar="ROWS",
        help=f"write the log every ROWS rows (default: {DEFAULT_FLUSH_ROWS})...",
    )
    parser.add_argument(
        "--inference-log-flush-seconds",
        type=float,
        default=DEFAULT_FLUSH_SECONDS,
        metavar="SECONDS",
        help=f"...or every SECONDS seconds (default: {DEFAULT_FLUSH_SECONDS:g})",
    )
    parser.add_argument(
        "--batch-max-rows",
        type=int,
        default=DEFAULT_BATCH_MAX_ROWS,
        metavar="ROWS",
        help="concurrent small requests share one model call of at most ROWS rows; 1 predicts "
        f"every request alone (default: {DEFAULT_BATCH_MAX_ROWS})",
    )
    parser.add_argument(
        "--batch-max-wait-ms",
        type=float,
        default=DEFAULT_BATCH_MAX_WAIT_MS,
        metavar="MS",
        help="how long a request may wait for others to share its model call (default: "
        f"{DEFAULT_BATCH_MAX_WAIT_MS:g}, only requests already waiting; at most "
        f"{MAX_BATCH_WAIT_SECONDS * 1000:g})",
    )
    rollout = parser.add_argument_group("rollout (a candidate beside --version)")
    rollout.add_argument("--candidate-version", metavar="VERSION", help="registered version served as the candidate")
    rollout.add_argument("--rollout-mode", choices=("shadow", "canary"), help="shadow: logged only; canary: answers")
    rollout.add_argument(
        "--canary-share", type=float, default=0.0, metavar="SHARE", help="share of keys the canary answers, in (0, 1]"
    )
    rollout.add_argument(
        "--sticky-column", metavar="COLUMN", help="request column whose value keeps a row on one version (canary)"
    )
    rollout.add_argument(
        "--allow-score-with",
        action="store_true",
        help="honour X-Score-With: candidate during a rollout (the deploy step's smoke test; on with admin routes)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (off by default: it costs per request)"
    )
    args = parser.parse_args(argv)
    loopback = is_loopback(args.host)
    if not loopback and not args.allow_remote:
        parser.error(
            f"--host {args.host} is not a loopback address; the local server binds to 127.0.0.1. "
            "Pass --allow-remote to expose it on purpose."
        )
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a valid TCP port")
    if args.inference_log_flush_rows < 1 or not 0 < args.inference_log_flush_seconds < float("inf"):
        parser.error("--inference-log-flush-rows and --inference-log-flush-seconds must be positive")
    if args.batch_max_rows < 1:
        parser.error("--batch-max-rows must be at least 1")
    if not 0 <= args.batch_max_wait_ms <= MAX_BATCH_WAIT_SECONDS * 1000:
        parser.error(f"--batch-max-wait-ms must be between 0 and {MAX_BATCH_WAIT_SECONDS * 1000:g}")
    if args.no_inference_log:
        args.inference_log = None
    elif not args.inference_log.strip():
        parser.error("--inference-log needs a folder or a URL; use --no-inference-log to turn the log off")
    if (args.candidate_version is None) != (args.rollout_mode is None):
        parser.error("--candidate-version and --rollout-mode go together")
    if args.rollout_mode == "canary" and not 0 < args.canary_share <= 1:
        parser.error(f"--canary-share must be in (0, 1] for a canary, got {args.canary_share:g}")
    args.enable_admin = loopback
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the model server until it is stopped; returns the exit status: 0 after a clean run, 1 when
    start-up failed (e.g. the model did not load), 2 for a bad option value.
    """
    settings = Settings.from_env()
    args = parse_args(argv, settings)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    # A server answers many small requests: torch's intra-op thread pool only adds hand-offs
    # to each of them and competes with the serving loop for the CPUs (MLOPS_TORCH_THREADS
    # still overrides this, e.g. for a server that mostly scores large batches).
    os.environ.setdefault(TORCH_THREADS_ENV, "1")

    import uvicorn

    from include.serving.app import create_app

    try:
        app = create_app(
            args.model_name,
            args.version,
            settings.tracking_uri,
            max_rows=args.max_rows,
            max_body_bytes=args.max_body_bytes,
            enable_admin=args.enable_admin,
            inference_log=args.inference_log,
            log_flush_rows=args.inference_log_flush_rows,
            log_flush_seconds=args.inference_log_flush_seconds,
            batch_max_rows=args.batch_max_rows,
            batch_max_wait_ms=args.batch_max_wait_ms,
            candidate_version=args.candidate_version,
            rollout_mode=args.rollout_mode,
            canary_share=args.canary_share,
            sticky_column=args.sticky_column,
            allow_score_with=args.enable_admin or args.allow_score_with,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns (rather than raising) when start-up fails, e.g. the model did not load
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
