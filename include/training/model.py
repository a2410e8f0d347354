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

Two estimators share the same preprocessed matrix (fitted by :mod:`include.training.fitting`):

- ``torch_mlp``: a small multilayer perceptron (64 -> 32, ReLU + dropout), trained
  with Adam on BCE-with-logits (binary), cross-entropy (multiclass) or squared
  error on the standardised target (regression), on CUDA when the process sees a GPU.
- ``sklearn_hgb``: scikit-learn's HistGradientBoostingClassifier (or -Regressor). One "epoch" is
  :data:`BOOSTING_ROUNDS_PER_EPOCH` boosting rounds (fit incrementally with
  ``warm_start`` so each epoch reports a real loss and duration); ``batch_size``
  does not apply to it.

Pickling a :class:`TabularModel` keeps only its model type, task and classes: the fitted
state travels as artifacts (preprocessor JSON, torch state dict + architecture
JSON, or a joblib file: :mod:`include.training.artifacts`) and
:meth:`TabularModel.load_context` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from include.data.spec import TASKS
from include.training import BOOSTING_ROUNDS_PER_EPOCH as BOOSTING_ROUNDS_PER_EPOCH
from include.training import MODEL_TYPES, PROBABILITY_PREFIX, ModelError
from include.training.artifacts import (
    load_estimator,
    load_mlp,
    load_preprocessor,
    required_artifacts,
    save_estimator,
    save_mlp,
)
from include.training.fitting import EpochReport, fit_hgb, fit_mlp, training_target
from include.training.mlp import build_mlp as build_mlp
from include.training.mlp import mlp_logits, torch_device_name
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
    _check_task(task)
    if task == "binary":
        return ["probability", "prediction"]
    if task == "multiclass":
        return ["prediction", "probability", *(f"{PROBABILITY_PREFIX}{name}" for name in classes)]
    return ["prediction"]


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_TYPES:
        raise ModelError(f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ModelError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


class TabularModel(mlflow.pyfunc.PythonModel):
    """Frame of spec features in, the task's output columns out (see the module docstring).

    ``classes`` are the multiclass class names in output order (the spec's
    ``classes``); binary and regression models take none. Raises :class:`ModelError`
    for an unknown model type or task, fewer than 3 classes for a multiclass model, or
    classes given to another task.
    """

    def __init__(self, model_type: str, task: str = "binary", classes: tuple[str, ...] | list[str] = ()):
        _check_model_type(model_type)
        _check_task(task)
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
        """True once :meth:`fit` or :meth:`load_artifacts` has given the model its preprocessor and
        estimator, so that it can predict and be saved; False before. Raises nothing."""
        return self.preprocessor is not None and (self.network is not None or self.estimator is not None)

    @property
    def output_columns(self) -> list[str]:
        """The names of the columns the model answers with, in order (:func:`output_columns` of its task
        and classes): a list of str, known before the model is fitted. Raises nothing."""
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
        target = training_target(labels, len(features), self.task, self.classes)
        matrix = preprocessor.fit_transform(features)
        self.preprocessor = preprocessor
        self.history = []

        def report(epoch_report: EpochReport) -> None:
            self.history.append(epoch_report)
            if on_epoch:
                on_epoch(epoch_report)

        if self.model_type == "torch_mlp":
            if self.task == "regression":
                # a target in its own units (hundreds, thousands) would need a per-dataset learning rate
                self.target_mean = float(target.mean())
                self.target_std = float(target.std()) or 1.0
                target = ((target - self.target_mean) / self.target_std).astype(np.float32)
            self.network, self._torch_device = fit_mlp(
                matrix, target, self.task, self._outputs, epochs, learning_rate, batch_size, seed, report
            )
            self.device = torch_device_name(self._torch_device)
        else:
            self.estimator = fit_hgb(matrix, target, self.task, self._outputs, epochs, learning_rate, seed, report)
            self.device = "cpu"
        return self

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
        """Returns the served output columns (:attr:`output_columns`, in order) as a dict of (rows,) arrays.

        Raises :class:`ModelError` for an unfitted model, and the preprocessor's
        :class:`~include.training.preprocessing.PreprocessingError` for a ``frame`` that
        lacks a feature column or whose columns differ in length.
        """
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
        """MLflow's pyfunc entry point: :meth:`predict_columns` as a DataFrame.

        Returns a frame of the :attr:`output_columns`, one row per input row, with
        ``model_input``'s index (``model_input`` may also be anything ``pd.DataFrame``
        accepts; ``context`` and ``params`` are not used). Raises what :meth:`predict_columns` raises.
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return pd.DataFrame(self.predict_columns(model_input), index=model_input.index)

    def save_artifacts(self, directory: str | Path) -> dict[str, str]:
        """Write the fitted state in ``directory``; returns log_model's ``artifacts``; raises ModelError if unfitted."""
        if not self.is_fitted:
            raise ModelError("cannot save an unfitted model")
        if self.network is not None:
            return save_mlp(
                directory, self.preprocessor, self.network, self._outputs, self.target_mean, self.target_std
            )
        return save_estimator(directory, self.preprocessor, self.estimator)

    def load_context(self, context) -> None:
        """MLflow's hook when the pyfunc loads: :meth:`load_artifacts` from ``context.artifacts``.

        Returns None. Raises what :meth:`load_artifacts` raises.
        """
        self.load_artifacts(context.artifacts)

    def load_artifacts(self, artifacts: dict[str, str]) -> None:
        """Rebuild the fitted state from :meth:`save_artifacts`'s paths (artifact name -> file path); returns None.

        Raises :class:`ModelError` when an artifact the model type needs is missing, the
        weights do not fit the preprocessor, or ``MLOPS_TORCH_THREADS`` is invalid; the
        preprocessor's ``PreprocessingError`` for a malformed state; ``OSError`` for a file
        that cannot be read.
        """
        missing = [name for name in required_artifacts(self.model_type) if name not in artifacts]
        if missing:
            raise ModelError(f"{self.model_type} model is missing artifact(s): {', '.join(missing)}")
        self.preprocessor = load_preprocessor(artifacts)
        if self.model_type == "torch_mlp":
            loaded = load_mlp(artifacts, self.preprocessor.output_dim)
            self.network, self._torch_device, self.target_mean, self.target_std = loaded
            self.device = torch_device_name(self._torch_device)
        else:
            self.estimator = load_estimator(artifacts)
            self.device = "cpu"


# versions registered before regression and multiclass existed unpickle this name
TabularClassifier = TabularModel
