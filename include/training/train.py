"""Train one model on one dataset version and log it to MLflow.

This is the exact command line the Kubernetes GPU pod runs (and, in the local
profile, the subprocess the training task starts)::

    python -m include.training.train --data-ref '<DatasetRef JSON>' --model-type torch_mlp \\
        --epochs 10 --learning-rate 0.001 --batch-size 256 [--seed 42] \\
        [--xcom-path /airflow/xcom/return.json] [--tag key=value ...]

It trains on the train part of :func:`include.data.split.holdout_split` only
(evaluation scores the held-out part), logs params, lineage tags, per-epoch
metrics and the model as one pyfunc, and hands ``{"run_id", "model_uri",
"device"}`` back as the last line of stdout and, when asked, as the pod's XCom
file. It registers nothing: registration is the gate's decision.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.settings import PROJECT_ROOT, Settings
from include.training import BOOSTING_ROUNDS_PER_EPOCH, DEFAULT_LEARNING_RATES, MODEL_TYPES
from include.util.fields import integer_at_least, one_of
from include.util.fs import write_atomically

if TYPE_CHECKING:
    import pandas as pd

    from include.data.spec import DatasetSpec

log = logging.getLogger(__name__)

GIT_COMMIT_ENV = "MLOPS_GIT_COMMIT"
INPUT_EXAMPLE_ROWS = 5
# the characters MLflow accepts in a tag key
TAG_KEY = re.compile(r"[A-Za-z0-9_\-. :/]+")


class TrainingError(ValueError):
    """The training data or configuration cannot produce a model."""


@dataclass(frozen=True)
class TrainingConfig:
    """What to train and how: ``model_type`` (one of ``MODEL_TYPES``), ``epochs`` (>= 1),
    ``learning_rate`` (a finite number > 0), ``batch_size`` (rows per optimiser step, >= 1)
    and ``seed`` (>= 0).

    Checked on construction: raises :class:`TrainingError` naming the first field out of range.
    """

    model_type: str
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int = 42

    def __post_init__(self) -> None:
        one_of(self.model_type, "model_type", MODEL_TYPES, TrainingError)
        integer_at_least(self.epochs, "epochs", 1, TrainingError)
        if not (
            isinstance(self.learning_rate, (int, float))
            and math.isfinite(self.learning_rate)
            and self.learning_rate > 0
        ):
            raise TrainingError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        integer_at_least(self.batch_size, "batch_size", 1, TrainingError)
        integer_at_least(self.seed, "seed", 0, TrainingError)

    def to_params(self) -> dict[str, Any]:
        """The config as a dict of MLflow params, one key per field."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced: its MLflow ``run_id`` and ``model_uri``, the ``device`` it ran on,
    row counts, a train-set score (never gated), the final loss and each epoch's seconds."""

    run_id: str
    model_uri: str
    device: str
    rows: int
    train_rows: int
    holdout_rows: int
    # the gate's metric on the training rows (e.g. train_roc_auc): a sanity figure, never gated
    train_metric: str
    train_score: float | None
    final_train_loss: float
    epoch_seconds: list[float] = field(default_factory=list)
    # the fitted in-memory model, for callers in the same process (not part of the XCom contract)
    model: Any = field(default=None, repr=False, compare=False)

    def to_xcom(self) -> dict[str, str]:
        """The contract with the next task, references only: a dict with keys ``run_id``, ``model_uri``, ``device``."""
        return {"run_id": self.run_id, "model_uri": self.model_uri, "device": self.device}


def git_commit() -> str:
    """The code version (a str): ``$MLOPS_GIT_COMMIT`` (set in images), else the checkout's HEAD, else ``unknown``."""
    commit = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if commit:
        return commit
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and commit else "unknown"


def _check_frame(frame: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = [column for column in spec.columns if column not in frame.columns]
    if missing:
        raise TrainingError(f"training data is missing column(s) required by spec {spec.name!r}: {', '.join(missing)}")


def train_and_log(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    config: TrainingConfig,
    settings: Settings,
    tags: Mapping[str, object] | None = None,
    *,
    extra_params: Mapping[str, object] | None = None,
) -> TrainingResult:
    """Train ``config.model_type`` on the train split of ``frame`` and log run + model to MLflow.

    Returns a :class:`TrainingResult`. The run ends FAILED if anything raises inside it. ``tags``
    (e.g. the dataset reference, the Airflow dag/run ids) are set on the run next to
    ``code.git_commit``; ``extra_params`` are logged beside the config. Raises :class:`TrainingError`
    for a frame that lacks a column or holds bad labels; the split's ``ValueError``, :class:`ModelError`
    and MLflow's errors pass through.
    """
    import mlflow

    from include.data.cast import CastError, target_array
    from include.data.split import holdout_split
    from include.evaluation.metrics import score
    from include.tracking import TRAINING_EXPERIMENT, ensure_experiment
    from include.training import NULLABLE_FEATURES_METADATA
    from include.training.model import TabularModel, as_model_input, pip_requirements
    from include.training.preprocessing import TabularPreprocessor

    _check_frame(frame, spec)
    train, holdout = holdout_split(frame, spec)
    features = as_model_input(train, spec)
    try:
        labels = target_array(train[spec.target], spec)
    except CastError as exc:
        raise TrainingError(str(exc)) from None

    experiment_id = ensure_experiment(settings, TRAINING_EXPERIMENT)
    run_tags = {"code.git_commit": git_commit(), "model_type": config.model_type}
    run_tags.update({str(key): str(value) for key, value in (tags or {}).items()})
    params = {**config.to_params(), "rows": len(frame), "train_rows": len(train), "holdout_rows": len(holdout)}
    params.update({str(key): value for key, value in (extra_params or {}).items()})

    with mlflow.start_run(experiment_id=experiment_id, tags=run_tags) as run:
        run_id = run.info.run_id
        mlflow.log_params(params)

        def log_epoch(report) -> None:
            mlflow.log_metrics({"train_loss": report.train_loss, "epoch_seconds": report.seconds}, step=report.epoch)
            log.info(
                "epoch %d/%d train_loss=%.4f (%.2fs)", report.epoch, config.epochs, report.train_loss, report.seconds
            )

        model = TabularModel(config.model_type, spec.task, spec.classes if spec.task == "multiclass" else ()).fit(
            features,
            labels,
            TabularPreprocessor.from_spec(spec),
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            seed=config.seed,
            on_epoch=log_epoch,
        )
        mlflow.set_tag("device", model.device)

        metric = spec.gate.metric
        train_score = score(spec.task, labels, model.predict_columns(features), model.classes).get(metric)
        if train_score is not None:
            mlflow.log_metric(f"train_{metric}", train_score)

        # complete rows make the example a request any client could send as it is
        complete = features.dropna()
        example = (complete if len(complete) else features).head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
        signature = model_signature(spec, model.predict(None, example))
        with tempfile.TemporaryDirectory(prefix="mlops-train-") as staging:
            model_info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                artifacts=model.save_artifacts(staging),
                signature=signature,
                input_example=example,
                # the spec's null policy travels with the version: the server answers null in these only
                metadata={NULLABLE_FEATURES_METADATA: [feature.name for feature in spec.features if feature.nullable]},
                # the pyfunc imports include.training.* when it loads: ship the package with it
                code_paths=[str(PROJECT_ROOT / "include")],
                pip_requirements=pip_requirements(config.model_type),
            )
    return TrainingResult(
        run_id=run_id,
        model_uri=model_info.model_uri,
        device=model.device,
        rows=len(frame),
        train_rows=len(train),
        holdout_rows=len(holdout),
        train_metric=metric,
        train_score=train_score,
        final_train_loss=model.history[-1].train_loss,
        epoch_seconds=[report.seconds for report in model.history],
        model=model,
    )


def model_signature(spec: DatasetSpec, output: pd.DataFrame):
    """The logged signature (an ``mlflow.models.ModelSignature``): every numeric feature a double, every
    categorical one a string (both may hold nulls), and the task's output columns as ``output`` holds them.

    Built from the spec rather than inferred from a few example rows, which may
    happen to hold a null or only integers.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double" if feature.is_numeric else "string", feature.name) for feature in spec.features])
    with warnings.catch_warnings():
        # MLflow warns that integer columns cannot hold nulls; the only one is the
        # *output* column ``prediction`` of a binary model, which never does
        warnings.filterwarnings("ignore", message=".*Integer columns.*", category=UserWarning)
        outputs = infer_signature(output).inputs
    return ModelSignature(inputs=inputs, outputs=outputs)


def write_xcom(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` atomically: a reader (the pod's XCom sidecar) never
    sees a half-written file. Returns nothing. Raises ``TypeError`` or ``ValueError`` when
    ``payload`` cannot be encoded as JSON (nothing is written then), and ``OSError`` when the
    file cannot be written (the previous file, if any, is left as it was)."""
    write_atomically(path, json.dumps(payload))


def _integer_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``; anything else is a usage error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int, _non_negative_int = _integer_at_least(1), _integer_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _learning_rate(text: str) -> float | None:
    # 'auto' lets one form field serve both model types, whose sensible rates differ 100-fold
    return None if text.strip().lower() in ("auto", "", "none") else _positive_float(text)


def _tag(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    # checked here so a bad key fails at parse time, not after the data is loaded
    if not TAG_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(f"tag key {key!r} may only hold letters, digits and _ - . space : /")
    return key, value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m include.training.train`` argument parser (an ``argparse.ArgumentParser``)."""
    parser = argparse.ArgumentParser(
        prog="python -m include.training.train",
        description="Train a model on one DVC dataset version and log it to MLflow (no registration).",
    )
    parser.add_argument(
        "--data-ref",
        required=True,
        type=_json_object,
        help="the DatasetRef of the training snapshot, as JSON (repo, path, md5, rev, ...)",
    )
    parser.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=10,
        help=f"training epochs (sklearn_hgb: {BOOSTING_ROUNDS_PER_EPOCH} boosting rounds each)",
    )
    parser.add_argument(
        "--learning-rate",
        type=_learning_rate,
        default=None,
        help="optimizer step size; 'auto' or absent: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_LEARNING_RATES.items()),
    )
    parser.add_argument("--batch-size", type=_positive_int, default=256, help="mini-batch size (torch_mlp only)")
    parser.add_argument("--seed", type=_non_negative_int, default=42)
    parser.add_argument(
        "--xcom-path",
        default=None,
        help="also write the result JSON here (KubernetesPodOperator: /airflow/xcom/return.json)",
    )
    parser.add_argument(
        "--tag",
        dest="tags",
        type=_tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a tag for the MLflow run (repeatable), e.g. airflow.dag_id=train",
    )
    return parser


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on the ``--data-ref`` snapshot and print the :class:`TrainingResult` as JSON; returns 0.

    A bad argument exits through ``argparse`` (``SystemExit`` with status 2); training errors pass through.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from include.data.versioning import DatasetRef

    try:
        ref = DatasetRef.from_dict(args.data_ref)
    except (KeyError, TypeError, ValueError) as exc:
        parser.error(f"argument --data-ref: not a DatasetRef: {exc}")
    learning_rate = args.learning_rate or DEFAULT_LEARNING_RATES[args.model_type]
    config = TrainingConfig(
        model_type=args.model_type,
        epochs=args.epochs,
        learning_rate=learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
    )

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Kubernetes stops a pod (deadline, deletion) with SIGTERM: unwinding through the MLflow
    # run's context ends that run as failed instead of leaving it RUNNING forever
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # download progress bars would bury the epoch lines in the pod log
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from include.data.spec import load_spec
    from include.data.versioning import DataRegistry

    settings = Settings.from_env()
    spec = load_spec(settings.dataset_spec)
    frame = DataRegistry(ref.repo, settings.dvc_remote).load(ref)
    log.info("loaded %d rows of %s (md5 %s, rev %s)", len(frame), ref.path, ref.md5, ref.rev)

    tags = dict(args.tags)
    for name in ("path", "md5", "rev", "repo", "rows", "window_start", "window_end"):
        value = getattr(ref, name, None)
        if value is not None:
            tags[f"data.{name}"] = value
    extra_params = {
        "data_ref": json.dumps(ref.to_dict(), sort_keys=True, default=str),
        "xcom_path": args.xcom_path or "",
    }
    result = train_and_log(frame, spec, config, settings, tags, extra_params=extra_params)

    payload = result.to_xcom()
    if args.xcom_path:
        write_xcom(args.xcom_path, payload)
    log.info("run %s: train_%s=%s on %s", result.run_id, result.train_metric, result.train_score, result.device)
    print(json.dumps(payload), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
