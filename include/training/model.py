"""The served model: one MLflow pyfunc holding the preprocessing and the estimator.

One class serves the three tasks a dataset spec may declare. Its output frame
(the served contract, :meth:`TabularModel.output_columns`):

- ``binary``: ``probability`` (float64, P(``positive_class``)) and ``prediction``
  (int64, 1 when that probability is >= 0.5, meaning ``positive_class``);
- ``multiclass``: ``prediction`` (the class text), ``probability`` (float64, of
  the predicted class) and one ``probability_<class>`` per class;
- ``regression``: ``prediction`` (float64, in the target's units).

Keeping both in one object is what stops training/serving skew: the serving
process never re-implements feature handling, it loads the very preprocessor
state the estimator was trained with.

Two estimators share the same preprocessed matrix:

- ``torch_mlp``: a small multilayer perceptron (64 -> 32, ReLU + dropout), trained
  with Adam on BCE-with-logits (binary), cross-entropy (multiclass) or squared
  error on the standardised target (regression), on CUDA when the process sees a GPU.
- ``sklearn_hgb``: scikit-learn's HistGradientBoostingClassifier (or -Regressor). One "epoch" is
  :data:`BOOSTING_ROUNDS_PER_EPOCH` boosting rounds (fit incrementally with
  ``warm_start`` so each epoch reports a real loss and duration); ``batch_size``
  does not apply to it.

Pickling a :class:`TabularModel` keeps only its model type, task and classes: the fitted
state travels as artifacts (preprocessor JSON, torch state dict + architecture
JSON, or a joblib file) and :meth:`TabularModel.load_context` rebuilds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from include.data.spec import TASKS
from include.training import BOOSTING_ROUNDS_PER_EPOCH, MODEL_TYPES, PROBABILITY_PREFIX
from include.training.mlp import (
    DROPOUT,
    HIDDEN_SIZES,
    ThreadsError,
    build_mlp,
    limit_torch_threads,
    mlp_logits,
    torch_device_name,
)
from include.training.preprocessing import TabularPreprocessor

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

__all__ = [
    "MODEL_TYPES",
    "BOOSTING_ROUNDS_PER_EPOCH",
    "TabularModel",
    "TabularClassifier",
    "EpochReport",
    "ModelError",
    "as_model_input",
    "build_mlp",
    "pip_requirements",
    "output_columns",
]

DECISION_THRESHOLD = 0.5

PREPROCESSOR_ARTIFACT = "preprocessor"
ARCHITECTURE_ARTIFACT = "architecture"
WEIGHTS_ARTIFACT = "weights"
ESTIMATOR_ARTIFACT = "estimator"


class ModelError(ValueError):
    """The model cannot be trained or loaded with what it was given."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    seconds: float


def pip_requirements(model_type: str) -> list[str]:
    """Returns the pinned requirements (``name==version`` str) of the serving environment for ``model_type``.

    Given explicitly so that MLflow does not infer them by loading the model in a
    subprocess (seconds per log) and so that a local-version suffix such as
    ``+cpu`` does not pin the serving image to the CPU build of torch; raises ModelError for an unknown type.
    """
    _check_model_type(model_type)
    # slim images install mlflow-skinny rather than mlflow; pin whichever is there
    candidates = [
        ("mlflow", "mlflow-skinny"),
        ("cloudpickle",),
        ("numpy",),
        ("pandas",),
        ("torch",) if model_type == "torch_mlp" else ("scikit-learn",),
    ]
    pins = []
    for names in candidates:
        for name in names:
            try:
                pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            raise ModelError(f"cannot pin the serving requirement {names[0]}: it is not installed here")
    return pins


def as_model_input(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A DataFrame of the spec's feature columns typed as the logged signature declares (:mod:`include.data.cast`).

    Raises :class:`ModelError` for a missing feature column or a value of the wrong kind.
    """
    from include.data.cast import CastError, model_input

    try:
        return model_input(frame, spec)
    except CastError as exc:
        raise ModelError(str(exc)) from None


def output_columns(task: str, classes: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Returns the served output column names of a ``task`` model ; raises ModelError for another task."""
    if task == "binary":
        return ["probability", "prediction"]
    if task == "multiclass":
        return ["prediction", "probability", *(f"{PROBABILITY_PREFIX}{name}" for name in classes)]
    if task == "regression":
        return ["prediction"]
    raise ModelError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_TYPES:
        raise ModelError(f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


def _check_labels(labels: Any, rows: int, task: str, classes: tuple[str, ...]) -> np.ndarray:
    """Training labels as the estimator needs them: float32 0/1 (binary), int64 class index
    (multiclass) or float32 values (regression)."""
    values = pd.Series(labels)
    if len(values) != rows:
        raise ModelError(f"got {len(values)} labels for {rows} rows")
    if values.isna().any():
        raise ModelError(f"{int(values.isna().sum())} label(s) are missing")
    if task == "multiclass":
        index = {name: position for position, name in enumerate(classes)}
        codes = values.map(index)
        if codes.isna().any():
            raise ModelError(
                f"labels must be among the classes {list(classes)}, got {values[codes.isna()].unique()[:5].tolist()}"
            )
        if codes.nunique() < 2:
            raise ModelError(f"training labels are all {values.iloc[0]!r}: a classifier needs two classes or more")
        return codes.to_numpy(dtype=np.int64)
    try:
        array = values.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        kind = "0/1" if task == "binary" else "numbers"
        raise ModelError(f"labels must be {kind}, got values like {values.unique()[:5].tolist()}") from None
    if task == "regression":
        if not np.isfinite(array).all():
            raise ModelError("regression labels must be finite numbers")
        return array.astype(np.float32)
    unexpected = sorted(set(np.unique(array)) - {0.0, 1.0})
    if unexpected:
        raise ModelError(f"labels must be 0/1, got {unexpected[:5]}")
    if len(np.unique(array)) < 2:
        raise ModelError(f"training labels are all {int(array[0])}: a classifier needs both classes")
    return array.astype(np.float32)


class TabularModel(mlflow.pyfunc.PythonModel):
    """Frame of spec features in, the task's output columns out (see the module docstring).

    ``classes`` are the multiclass class names in output order (the spec's
    ``classes``); binary and regression models take none.
    """

    def __init__(self, model_type: str, task: str = "binary", classes: tuple[str, ...] | list[str] = ()):
        _check_model_type(model_type)
        if task not in TASKS:
            raise ModelError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        classes = tuple(str(name) for name in classes)
        if task == "multiclass" and len(classes) < 3:
            raise ModelError(f"a multiclass model needs at least 3 classes, got {list(classes)}")
        if task != "multiclass" and classes:
            raise ModelError(f"a {task} model takes no classes, got {list(classes)}")
        self.model_type = model_type
        self.task = task
        self.classes = classes
        self.preprocessor: TabularPreprocessor | None = None
        self.network = None
        self.estimator = None
        # regression: the MLP learns the standardised target; these undo it
        self.target_mean, self.target_std = 0.0, 1.0
        self.device = "cpu"
        self.history: list[EpochReport] = []
        self._torch_device = None
        self._class_array = np.array(classes, dtype=object)

    # the fitted state is logged as artifacts; pickling it as well would duplicate it
    def __getstate__(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "task": self.task, "classes": list(self.classes)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # versions logged before tasks existed were binary
        self.__init__(state["model_type"], state.get("task", "binary"), state.get("classes", ()))

    @property
    def is_fitted(self) -> bool:
        return self.preprocessor is not None and (self.network is not None or self.estimator is not None)

    @property
    def output_columns(self) -> list[str]:
        return output_columns(self.task, self.classes)

    @property
    def _outputs(self) -> int:
        return len(self.classes) if self.task == "multiclass" else 1

    def fit(
        self,
        features: pd.DataFrame,
        labels: Any,
        preprocessor: TabularPreprocessor,
        *,
        epochs: int,
        learning_rate: float,
        batch_size: int,
        seed: int = 42,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> TabularModel:
        """Fit ``preprocessor`` then the estimator on ``features``; ``on_epoch`` sees each epoch's report.

        ``labels`` are typed by :func:`include.data.cast.target_array`: 0/1 (binary),
        class text (multiclass) or numbers (regression). Returns ``self``. Raises :class:`ModelError`.
        """
        if epochs < 1:
            raise ModelError(f"epochs must be >= 1, got {epochs}")
        if not learning_rate > 0:
            raise ModelError(f"learning_rate must be > 0, got {learning_rate}")
        if batch_size < 1:
            raise ModelError(f"batch_size must be >= 1, got {batch_size}")
        target = _check_labels(labels, len(features), self.task, self.classes)
        matrix = preprocessor.fit_transform(features)
        self.preprocessor = preprocessor
        self.history = []
        report = on_epoch or (lambda _report: None)
        if self.model_type == "torch_mlp":
            self._fit_mlp(matrix, target, epochs, learning_rate, batch_size, seed, report)
        else:
            self._fit_hgb(matrix, target, epochs, learning_rate, seed, report)
        return self

    def _fit_mlp(self, matrix, target, epochs, learning_rate, batch_size, seed, report) -> None:
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(seed)
        network = build_mlp(matrix.shape[1], output_dim=self._outputs).to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        if self.task == "binary":
            loss_function = torch.nn.BCEWithLogitsLoss(reduction="sum")
        elif self.task == "multiclass":
            loss_function = torch.nn.CrossEntropyLoss(reduction="sum")
        else:
            # a target in its own units (hundreds, thousands) would need a per-dataset learning rate
            self.target_mean = float(target.mean())
            self.target_std = float(target.std()) or 1.0
            target = ((target - self.target_mean) / self.target_std).astype(np.float32)
            loss_function = torch.nn.MSELoss(reduction="sum")
        # the whole training matrix is small next to GPU memory: one copy, then index per batch
        inputs = torch.from_numpy(matrix).to(device)
        labels = torch.from_numpy(target).to(device)
        shuffler = torch.Generator().manual_seed(seed)
        rows = len(matrix)
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            network.train()
            order = torch.randperm(rows, generator=shuffler).to(device)
            total_loss = torch.zeros((), device=device)
            for start in range(0, rows, batch_size):
                batch = order[start : start + batch_size]
                output = network(inputs[batch])
                loss = loss_function(output if self.task == "multiclass" else output.squeeze(1), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                (loss / len(batch)).backward()
                optimizer.step()
                total_loss += loss.detach()
            # .item() synchronises with the GPU, so the epoch time is the real one
            train_loss = total_loss.item() / rows
            epoch_report = EpochReport(epoch, train_loss, time.perf_counter() - started)
            self.history.append(epoch_report)
            report(epoch_report)
        network.eval()
        self.network = network
        self._torch_device = device
        self.device = torch_device_name(device)

    def _fit_hgb(self, matrix, target, epochs, learning_rate, seed, report) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.metrics import log_loss, mean_squared_error

        kind = HistGradientBoostingRegressor if self.task == "regression" else HistGradientBoostingClassifier
        estimator = kind(
            learning_rate=learning_rate,
            max_iter=BOOSTING_ROUNDS_PER_EPOCH,
            early_stopping=False,
            warm_start=True,
            random_state=seed,
        )
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            estimator.set_params(max_iter=epoch * BOOSTING_ROUNDS_PER_EPOCH)
            estimator.fit(matrix, target)
            seconds = time.perf_counter() - started
            if self.task == "regression":
                train_loss = float(mean_squared_error(target, estimator.predict(matrix)))
            else:
                train_loss = float(
                    log_loss(target, estimator.predict_proba(matrix), labels=list(range(max(self._outputs, 2))))
                )
            epoch_report = EpochReport(epoch, train_loss, seconds)
            self.history.append(epoch_report)
            report(epoch_report)
        self.estimator = estimator
        self.device = "cpu"

    def _raw(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """(rows, outputs) float64: P(1) (binary), P(class) (multiclass) or the value (regression)."""
        if not self.is_fitted:
            raise ModelError("the model is not fitted or loaded")
        matrix = self.preprocessor.transform(frame)
        if len(matrix) == 0:
            return np.zeros((0, self._outputs), dtype=np.float64)
        if self.network is not None:
            import torch

            with torch.inference_mode():
                inputs = torch.from_numpy(matrix)
                if self._torch_device is not None and self._torch_device.type != "cpu":
                    inputs = inputs.to(self._torch_device)
                logits = mlp_logits(self.network, inputs).cpu().numpy().astype(np.float64)
            # numpy's exp treats every element alike (torch's sigmoid does not: its vectorised
            # and scalar paths may differ in the last bit depending on where a row sits)
            if self.task == "binary":
                return 1.0 / (1.0 + np.exp(-logits))
            if self.task == "regression":
                return logits * self.target_std + self.target_mean
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        if self.task == "regression":
            return self.estimator.predict(matrix).astype(np.float64)[:, None]
        probabilities = self.estimator.predict_proba(matrix).astype(np.float64)
        if self.task == "binary":
            return probabilities[:, 1:2]
        # the estimator knows only the classes it saw in training: place them in the declared order
        full = np.zeros((len(matrix), self._outputs), dtype=np.float64)
        full[:, self.estimator.classes_.astype(np.int64)] = probabilities
        return full

    def predict_proba(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Returns binary: P(``positive_class``) per row, float64 shape (rows,); multiclass: (rows, classes).

        ``frame`` may also be a mapping of column name to array. A row's probability
        depends on that row alone, to the last bit, whatever else is in the batch
        (see :func:`include.training.mlp.mlp_logits`), so a server may predict concurrent requests
        together and still answer each exactly as it would have alone.
        Raises :class:`ModelError` for a regression model or an unfitted one.
        """
        if self.task == "regression":
            raise ModelError("a regression model predicts values, not probabilities")
        raw = self._raw(frame)
        return raw[:, 0] if self.task == "binary" else raw

    def predict_columns(self, frame: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Returns the served output columns (:attr:`output_columns`, in order) as a dict of (rows,) arrays."""
        raw = self._raw(frame)
        if self.task == "binary":
            probability = raw[:, 0]
            return {"probability": probability, "prediction": (probability >= DECISION_THRESHOLD).astype(np.int64)}
        if self.task == "regression":
            return {"prediction": raw[:, 0]}
        best = raw.argmax(axis=1)
        columns = {"prediction": self._class_array[best], "probability": raw[np.arange(len(raw)), best]}
        for position, name in enumerate(self.classes):
            columns[f"{PROBABILITY_PREFIX}{name}"] = raw[:, position]
        return columns

    def predict_with_labels(self, frame: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (probability float64, label int64) arrays of shape (rows,); raises ModelError unless binary."""
        if self.task != "binary":
            raise ModelError(f"predict_with_labels is for binary models; use predict_columns for {self.task}")
        columns = self.predict_columns(frame)
        return columns["probability"], columns["prediction"]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return pd.DataFrame(self.predict_columns(model_input), index=model_input.index)

    def save_artifacts(self, directory: str | Path) -> dict[str, str]:
        """Write the fitted state in ``directory``; returns log_model's ``artifacts``; raises ModelError if unfitted."""
        if not self.is_fitted:
            raise ModelError("cannot save an unfitted model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        artifacts = {PREPROCESSOR_ARTIFACT: directory / "preprocessor.json"}
        artifacts[PREPROCESSOR_ARTIFACT].write_text(json.dumps(self.preprocessor.to_dict(), indent=2))
        if self.network is not None:
            import torch

            architecture = {
                "input_dim": self.preprocessor.output_dim,
                "hidden_sizes": list(HIDDEN_SIZES),
                "dropout": DROPOUT,
                "output_dim": self._outputs,
                "target_mean": self.target_mean,
                "target_std": self.target_std,
            }
            artifacts[ARCHITECTURE_ARTIFACT] = directory / "architecture.json"
            artifacts[ARCHITECTURE_ARTIFACT].write_text(json.dumps(architecture, indent=2))
            artifacts[WEIGHTS_ARTIFACT] = directory / "weights.pt"
            state = {name: tensor.detach().cpu() for name, tensor in self.network.state_dict().items()}
            torch.save(state, artifacts[WEIGHTS_ARTIFACT])
        else:
            import joblib

            artifacts[ESTIMATOR_ARTIFACT] = directory / "estimator.joblib"
            joblib.dump(self.estimator, artifacts[ESTIMATOR_ARTIFACT])
        return {name: str(path) for name, path in artifacts.items()}

    def load_context(self, context) -> None:
        self.load_artifacts(context.artifacts)

    def load_artifacts(self, artifacts: dict[str, str]) -> None:
        """Rebuild the fitted state from :meth:`save_artifacts`'s paths; raises ModelError if one is missing."""
        required = [PREPROCESSOR_ARTIFACT]
        if self.model_type == "torch_mlp":
            required += [ARCHITECTURE_ARTIFACT, WEIGHTS_ARTIFACT]
        else:
            required.append(ESTIMATOR_ARTIFACT)
        missing = [name for name in required if name not in artifacts]
        if missing:
            raise ModelError(f"{self.model_type} model is missing artifact(s): {', '.join(missing)}")
        state = json.loads(Path(artifacts[PREPROCESSOR_ARTIFACT]).read_text())
        self.preprocessor = TabularPreprocessor.from_dict(state)
        if self.model_type == "torch_mlp":
            self._load_mlp(artifacts)
        else:
            import joblib

            self.estimator = joblib.load(artifacts[ESTIMATOR_ARTIFACT])
            self.device = "cpu"

    def _load_mlp(self, artifacts: dict[str, str]) -> None:
        import torch

        architecture = json.loads(Path(artifacts[ARCHITECTURE_ARTIFACT]).read_text())
        if architecture["input_dim"] != self.preprocessor.output_dim:
            raise ModelError(
                f"weights expect {architecture['input_dim']} inputs but the preprocessor "
                f"produces {self.preprocessor.output_dim}"
            )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        network = build_mlp(
            architecture["input_dim"],
            architecture["hidden_sizes"],
            architecture["dropout"],
            architecture.get("output_dim", 1),
        )
        network.load_state_dict(torch.load(artifacts[WEIGHTS_ARTIFACT], map_location=device, weights_only=True))
        network.to(device).eval()
        if device.type == "cpu":
            try:
                limit_torch_threads()
            except ThreadsError as exc:
                raise ModelError(str(exc)) from None
        self.target_mean = float(architecture.get("target_mean", 0.0))
        self.target_std = float(architecture.get("target_std", 1.0))
        self.network = network
        self._torch_device = device
        self.device = torch_device_name(device)


# versions registered before regression and multiclass existed unpickle this name
TabularClassifier = TabularModel
