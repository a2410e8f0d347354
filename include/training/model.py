"""The served model: one MLflow pyfunc holding the preprocessing and the estimator.

Keeping both in one object is what stops training/serving skew: the serving
process never re-implements feature handling, it loads the very preprocessor
state the estimator was trained with.

Two estimators share the same preprocessed matrix:

- ``torch_mlp``: a small multilayer perceptron (64 -> 32, ReLU + dropout), trained
  with Adam on BCE-with-logits, on CUDA when the process sees a GPU.
- ``sklearn_hgb``: scikit-learn's HistGradientBoostingClassifier. One "epoch" is
  :data:`BOOSTING_ROUNDS_PER_EPOCH` boosting rounds (fit incrementally with
  ``warm_start`` so each epoch reports a real loss and duration); ``batch_size``
  does not apply to it.

Pickling a :class:`TabularClassifier` keeps only its model type: the fitted
state travels as artifacts (preprocessor JSON, torch state dict + architecture
JSON, or a joblib file) and :meth:`TabularClassifier.load_context` rebuilds it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import mlflow.pyfunc
import numpy as np
import pandas as pd

from include.training import BOOSTING_ROUNDS_PER_EPOCH, MODEL_TYPES
from include.training.preprocessing import TabularPreprocessor

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

__all__ = ["MODEL_TYPES", "BOOSTING_ROUNDS_PER_EPOCH", "TabularClassifier", "EpochReport", "ModelError",
           "as_model_input", "build_mlp", "pip_requirements"]

HIDDEN_SIZES = (64, 32)
DROPOUT = 0.1
DECISION_THRESHOLD = 0.5

PREPROCESSOR_ARTIFACT = "preprocessor"
ARCHITECTURE_ARTIFACT = "architecture"
WEIGHTS_ARTIFACT = "weights"
ESTIMATOR_ARTIFACT = "estimator"

# an override for the inference thread count, e.g. 1 per worker when a server forks several
TORCH_THREADS_ENV = "MLOPS_TORCH_THREADS"


class ModelError(ValueError):
    """The model cannot be trained or loaded with what it was given."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    seconds: float


def build_mlp(input_dim: int, hidden_sizes: tuple[int, ...] | list[int] = HIDDEN_SIZES, dropout: float = DROPOUT):
    """A plain ``nn.Sequential`` so a state dict loads without any custom class."""
    from torch import nn

    layers: list[Any] = []
    width = input_dim
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def pip_requirements(model_type: str) -> list[str]:
    """Pinned requirements of the serving environment for ``model_type``.

    Given explicitly so that MLflow does not infer them by loading the model in a
    subprocess (seconds per log) and so that a local-version suffix such as
    ``+cpu`` does not pin the serving image to the CPU build of torch.
    """
    _check_model_type(model_type)
    # slim images install mlflow-skinny rather than mlflow; pin whichever is there
    candidates = [("mlflow", "mlflow-skinny"), ("cloudpickle",), ("numpy",), ("pandas",),
                  ("torch",) if model_type == "torch_mlp" else ("scikit-learn",)]
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


def as_model_input(frame: pd.DataFrame, spec: "DatasetSpec") -> pd.DataFrame:
    """The spec's feature columns, typed as the logged signature declares them.

    The signature declares every numeric feature a double (MLflow's advice for
    columns that may hold nulls; its scoring server casts JSON to it), and
    MLflow refuses an int64 column for a double, so in-process callers scoring
    frames read from parquet pass them through here first.
    """
    missing = [name for name in spec.feature_names if name not in frame.columns]
    if missing:
        raise ModelError(f"input is missing required feature column(s): {', '.join(missing)}")
    features = frame[spec.feature_names].copy()
    for name in spec.numeric_features:
        if features[name].dtype != np.float64:
            try:
                features[name] = pd.to_numeric(features[name], errors="raise").astype(np.float64)
            except (TypeError, ValueError):
                raise ModelError(f"numeric feature {name!r} holds non-numeric values") from None
    for name in spec.categorical_features:
        if features[name].dtype != object:
            features[name] = features[name].astype(object).where(features[name].notna(), None)
    return features


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_TYPES:
        raise ModelError(f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


def _check_labels(labels: Any, rows: int) -> np.ndarray:
    values = pd.Series(labels)
    if len(values) != rows:
        raise ModelError(f"got {len(values)} labels for {rows} rows")
    if values.isna().any():
        raise ModelError(f"{int(values.isna().sum())} label(s) are missing")
    try:
        array = values.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"labels must be 0/1, got values like {values.unique()[:5].tolist()}") from None
    unexpected = sorted(set(np.unique(array)) - {0.0, 1.0})
    if unexpected:
        raise ModelError(f"labels must be 0/1, got {unexpected[:5]}")
    if len(np.unique(array)) < 2:
        raise ModelError(f"training labels are all {int(array[0])}: a classifier needs both classes")
    return array.astype(np.float32)


def _torch_device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


class TabularClassifier(mlflow.pyfunc.PythonModel):
    """Churn-style binary classifier: frame of spec features in, P(label=1) out."""

    def __init__(self, model_type: str):
        _check_model_type(model_type)
        self.model_type = model_type
        self.preprocessor: TabularPreprocessor | None = None
        self.network = None
        self.estimator = None
        self.device = "cpu"
        self.history: list[EpochReport] = []
        self._torch_device = None

    # the fitted state is logged as artifacts; pickling it as well would duplicate it
    def __getstate__(self) -> dict[str, Any]:
        return {"model_type": self.model_type}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_type"])

    @property
    def is_fitted(self) -> bool:
        return self.preprocessor is not None and (self.network is not None or self.estimator is not None)

    def fit(self, features: pd.DataFrame, labels: Any, preprocessor: TabularPreprocessor, *, epochs: int,
            learning_rate: float, batch_size: int, seed: int = 42,
            on_epoch: Callable[[EpochReport], None] | None = None) -> "TabularClassifier":
        """Fit ``preprocessor`` then the estimator on ``features``; ``on_epoch`` sees each epoch's report."""
        if epochs < 1:
            raise ModelError(f"epochs must be >= 1, got {epochs}")
        if not learning_rate > 0:
            raise ModelError(f"learning_rate must be > 0, got {learning_rate}")
        if batch_size < 1:
            raise ModelError(f"batch_size must be >= 1, got {batch_size}")
        target = _check_labels(labels, len(features))
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
        network = build_mlp(matrix.shape[1]).to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        loss_function = torch.nn.BCEWithLogitsLoss(reduction="sum")
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
                batch = order[start:start + batch_size]
                loss = loss_function(network(inputs[batch]).squeeze(1), labels[batch])
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
        self.device = _torch_device_name(device)

    def _fit_hgb(self, matrix, target, epochs, learning_rate, seed, report) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import log_loss

        estimator = HistGradientBoostingClassifier(
            learning_rate=learning_rate, max_iter=BOOSTING_ROUNDS_PER_EPOCH, early_stopping=False,
            warm_start=True, random_state=seed,
        )
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            estimator.set_params(max_iter=epoch * BOOSTING_ROUNDS_PER_EPOCH)
            estimator.fit(matrix, target)
            seconds = time.perf_counter() - started
            train_loss = float(log_loss(target, estimator.predict_proba(matrix)[:, 1], labels=[0, 1]))
            epoch_report = EpochReport(epoch, train_loss, seconds)
            self.history.append(epoch_report)
            report(epoch_report)
        self.estimator = estimator
        self.device = "cpu"

    def predict_proba(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """P(label=1) per row, float64; ``frame`` may also be a mapping of column name to array.

        A row's probability depends on that row alone, to the last bit, whatever else
        is in the batch (see :func:`_mlp_logits`), so a server may predict concurrent
        requests together and still answer each exactly as it would have alone.
        """
        if not self.is_fitted:
            raise ModelError("the model is not fitted or loaded")
        matrix = self.preprocessor.transform(frame)
        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float64)
        if self.network is not None:
            import torch

            with torch.inference_mode():
                inputs = torch.from_numpy(matrix)
                if self._torch_device is not None and self._torch_device.type != "cpu":
                    inputs = inputs.to(self._torch_device)
                logits = _mlp_logits(self.network, inputs).cpu().numpy().astype(np.float64)
            # numpy's exp treats every element alike (torch's sigmoid does not: its vectorised
            # and scalar paths may differ in the last bit depending on where a row sits)
            return 1.0 / (1.0 + np.exp(-logits))
        return self.estimator.predict_proba(matrix)[:, 1].astype(np.float64)

    def predict_with_labels(self, frame: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(probability float64, predicted label int64) per row: the served contract without a DataFrame."""
        probability = self.predict_proba(frame)
        return probability, (probability >= DECISION_THRESHOLD).astype(np.int64)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        probability, prediction = self.predict_with_labels(model_input)
        return pd.DataFrame({"probability": probability, "prediction": prediction}, index=model_input.index)

    def save_artifacts(self, directory: str | Path) -> dict[str, str]:
        """Write the fitted state under ``directory``; returns the ``artifacts`` mapping for log_model."""
        if not self.is_fitted:
            raise ModelError("cannot save an unfitted model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        artifacts = {PREPROCESSOR_ARTIFACT: directory / "preprocessor.json"}
        artifacts[PREPROCESSOR_ARTIFACT].write_text(json.dumps(self.preprocessor.to_dict(), indent=2))
        if self.network is not None:
            import torch

            architecture = {"input_dim": self.preprocessor.output_dim, "hidden_sizes": list(HIDDEN_SIZES),
                            "dropout": DROPOUT}
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
        """Rebuild the fitted state from the paths :meth:`save_artifacts` returned."""
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
            raise ModelError(f"weights expect {architecture['input_dim']} inputs but the preprocessor "
                             f"produces {self.preprocessor.output_dim}")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        network = build_mlp(architecture["input_dim"], architecture["hidden_sizes"], architecture["dropout"])
        network.load_state_dict(torch.load(artifacts[WEIGHTS_ARTIFACT], map_location=device, weights_only=True))
        network.to(device).eval()
        if device.type == "cpu":
            _limit_torch_threads()
        self.network = network
        self._torch_device = device
        self.device = _torch_device_name(device)


def _mlp_logits(network, inputs):
    """The network's logits, each row computed on its own: a one-row matrix product per row.

    ``nn.Linear`` multiplies the whole batch at once, and the matrix kernel it picks
    (and so the order of the floating-point sums) depends on the number of rows: a
    row's logit could then change in its last bit with the batch it was sent in.
    A batched product of one-row matrices runs the same kernel for every row.
    """
    import torch

    hidden = inputs.unsqueeze(1)
    for layer in network:
        if isinstance(layer, torch.nn.Linear):
            rows = hidden.shape[0]
            weights = layer.weight.t().unsqueeze(0).expand(rows, -1, -1)
            hidden = torch.baddbmm(layer.bias.view(1, 1, -1).expand(rows, 1, -1), hidden, weights)
        else:
            hidden = layer(hidden)
    return hidden.reshape(-1)


def _limit_torch_threads() -> None:
    """Cap intra-op threads at the CPUs this process may actually use.

    torch sizes its pool from the host's cores, which inside a CPU-limited
    container oversubscribes and makes small-batch latency jittery; the network
    is so small that more threads than CPUs never helps.
    """
    import torch

    override = os.environ.get(TORCH_THREADS_ENV)
    if override:
        try:
            threads = int(override)
        except ValueError:
            raise ModelError(f"{TORCH_THREADS_ENV} must be a positive integer, got {override!r}") from None
        if threads < 1:
            raise ModelError(f"{TORCH_THREADS_ENV} must be a positive integer, got {override!r}")
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = min(torch.get_num_threads(), available)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
