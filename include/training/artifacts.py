"""The fitted state of a :class:`~include.training.model.TabularModel` as files: the MLflow artifacts logged with it.

Every model writes its preprocessor as JSON (``preprocessor.json``); a ``torch_mlp``
adds the network's shape and target scaling (``architecture.json``) and its state
dict (``weights.pt``), a ``sklearn_hgb`` its estimator (``estimator.joblib``). The
savers return artifact name -> path, the ``artifacts`` ``mlflow.pyfunc.log_model`` files
them under; the loaders read the same mapping back from ``context.artifacts``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from include.training import ModelError
from include.training.mlp import DROPOUT, HIDDEN_SIZES, ThreadsError, build_mlp, limit_torch_threads
from include.training.preprocessing import TabularPreprocessor

PREPROCESSOR_ARTIFACT = "preprocessor"
ARCHITECTURE_ARTIFACT = "architecture"
WEIGHTS_ARTIFACT = "weights"
ESTIMATOR_ARTIFACT = "estimator"


def required_artifacts(model_type: str) -> list[str]:
    """Returns the artifact names a ``model_type`` model loads from; raises nothing."""
    if model_type == "torch_mlp":
        return [PREPROCESSOR_ARTIFACT, ARCHITECTURE_ARTIFACT, WEIGHTS_ARTIFACT]
    return [PREPROCESSOR_ARTIFACT, ESTIMATOR_ARTIFACT]


def save_mlp(
    directory: str | Path, preprocessor: TabularPreprocessor, network: Any, output_dim: int, mean: float, std: float
) -> dict[str, str]:
    """Write ``preprocessor`` and the torch ``network`` in ``directory``, created if need be.

    ``output_dim`` is the network's number of logits; ``mean`` and ``std`` undo the
    standardisation of a regression target (0.0 and 1.0 otherwise). Returns artifact
    name -> file path (str). Raises ``OSError`` when a file cannot be written.
    """
    import torch

    directory = Path(directory)
    artifacts = _save_preprocessor(directory, preprocessor)
    architecture = {
        "input_dim": preprocessor.output_dim,
        "hidden_sizes": list(HIDDEN_SIZES),
        "dropout": DROPOUT,
        "output_dim": output_dim,
        "target_mean": mean,
        "target_std": std,
    }
    artifacts[ARCHITECTURE_ARTIFACT] = directory / "architecture.json"
    artifacts[ARCHITECTURE_ARTIFACT].write_text(json.dumps(architecture, indent=2))
    artifacts[WEIGHTS_ARTIFACT] = directory / "weights.pt"
    state = {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}
    torch.save(state, artifacts[WEIGHTS_ARTIFACT])
    return {name: str(path) for name, path in artifacts.items()}


def save_estimator(directory: str | Path, preprocessor: TabularPreprocessor, estimator: Any) -> dict[str, str]:
    """Write ``preprocessor`` and the scikit-learn ``estimator`` in ``directory``, created if need be.

    Returns artifact name -> file path (str). Raises ``OSError`` when a file cannot be written.
    """
    import joblib

    directory = Path(directory)
    artifacts = _save_preprocessor(directory, preprocessor)
    artifacts[ESTIMATOR_ARTIFACT] = directory / "estimator.joblib"
    joblib.dump(estimator, artifacts[ESTIMATOR_ARTIFACT])
    return {name: str(path) for name, path in artifacts.items()}


def _save_preprocessor(directory: Path, preprocessor: TabularPreprocessor) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {PREPROCESSOR_ARTIFACT: directory / "preprocessor.json"}
    artifacts[PREPROCESSOR_ARTIFACT].write_text(json.dumps(preprocessor.to_dict(), indent=2))
    return artifacts


def load_preprocessor(artifacts: dict[str, str]) -> TabularPreprocessor:
    """Returns the fitted preprocessor :func:`save_mlp` or :func:`save_estimator` wrote. Raises ``OSError`` for a file
    that cannot be read and ``PreprocessingError`` for a malformed state."""
    state = json.loads(Path(artifacts[PREPROCESSOR_ARTIFACT]).read_text())
    return TabularPreprocessor.from_dict(state)


def load_mlp(artifacts: dict[str, str], input_dim: int) -> tuple[Any, Any, float, float]:
    """The network :func:`save_mlp` wrote, on CUDA when the process sees a GPU, else on the CPU
    with torch's threads capped (:func:`~include.training.mlp.limit_torch_threads`).

    Returns ``(network, device, target_mean, target_std)``: the ``nn.Sequential`` in eval mode,
    its ``torch.device`` and the regression target's scaling (0.0 and 1.0 for a classifier).
    Raises :class:`ModelError` when the weights expect another ``input_dim`` than the
    preprocessor produces or ``MLOPS_TORCH_THREADS`` is invalid; ``OSError`` for a file that
    cannot be read.
    """
    import torch

    architecture = json.loads(Path(artifacts[ARCHITECTURE_ARTIFACT]).read_text())
    if architecture["input_dim"] != input_dim:
        raise ModelError(f"weights expect {architecture['input_dim']} inputs but the preprocessor produces {input_dim}")
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
    return network, device, float(architecture.get("target_mean", 0.0)), float(architecture.get("target_std", 1.0))


def load_estimator(artifacts: dict[str, str]) -> Any:
    """Returns the fitted scikit-learn estimator :func:`save_estimator` wrote; raises ``OSError`` for a
    file that cannot be read."""
    import joblib

    return joblib.load(artifacts[ESTIMATOR_ARTIFACT])
