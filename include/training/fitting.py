"""Fitting the two estimators of a :class:`~include.training.model.TabularModel` on the preprocessed matrix.

Both take the matrix the preprocessor produced (float32, one row per training row)
and the target as :func:`training_target` types it, and report every epoch as it
ends (:class:`EpochReport`):

- :func:`fit_mlp`: the torch MLP (:mod:`include.training.mlp`), trained with Adam in
  shuffled minibatches on CUDA when the process sees a GPU;
- :func:`fit_hgb`: scikit-learn's histogram gradient boosting, grown by
  :data:`~include.training.BOOSTING_ROUNDS_PER_EPOCH` rounds per epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.training import BOOSTING_ROUNDS_PER_EPOCH, ModelError
from include.training.mlp import build_mlp


@dataclass(frozen=True)
class EpochReport:
    """One finished training epoch: ``epoch`` (counted from 1), ``train_loss`` (the mean loss
    per training row over the epoch: log loss for a classifier, squared error for a regressor,
    on the standardised target for the MLP) and ``seconds`` (the epoch's wall-clock time)."""

    epoch: int
    train_loss: float
    seconds: float


def training_target(labels: Any, rows: int, task: str, classes: tuple[str, ...]) -> np.ndarray:
    """Returns the training labels as the estimators need them, shape (rows,): float32 0/1 (binary),
    int64 class index into ``classes`` (multiclass) or float32 values (regression).

    Raises :class:`ModelError` for a count other than ``rows``, a missing label, a label
    outside the classes (multiclass) or other than 0/1 (binary), a non-finite value
    (regression), or a classifier's labels that hold a single class.
    """
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


def fit_mlp(matrix, target, task, outputs, epochs, learning_rate, batch_size, seed, report) -> tuple[Any, Any]:
    """Train a fresh MLP with ``outputs`` logits (1, or one per class) for ``task`` on ``matrix``.

    ``matrix`` is the preprocessed (rows, inputs) float32 array and ``target`` what
    :func:`training_target` returns, a regression one already standardised; Adam with
    ``learning_rate`` runs ``epochs`` passes of ``batch_size`` shuffled rows, seeded by
    ``seed``, and ``report`` (a callable) gets each epoch's :class:`EpochReport`.
    Returns ``(network, device)``: the trained ``nn.Sequential`` in eval mode and the
    ``torch.device`` it lives on (CUDA when available). Raises whatever torch or
    ``report`` raise.
    """
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    network = build_mlp(matrix.shape[1], output_dim=outputs).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    if task == "binary":
        loss_function = torch.nn.BCEWithLogitsLoss(reduction="sum")
    elif task == "multiclass":
        loss_function = torch.nn.CrossEntropyLoss(reduction="sum")
    else:
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
            loss = loss_function(output if task == "multiclass" else output.squeeze(1), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            (loss / len(batch)).backward()
            optimizer.step()
            total_loss += loss.detach()
        # .item() synchronises with the GPU, so the epoch time is the real one
        train_loss = total_loss.item() / rows
        report(EpochReport(epoch, train_loss, time.perf_counter() - started))
    network.eval()
    return network, device


def fit_hgb(matrix, target, task, outputs, epochs, learning_rate, seed, report) -> Any:
    """Grow a histogram gradient boosting classifier (regressor for ``regression``) on ``matrix``, epoch by epoch.

    Takes the arguments of :func:`fit_mlp` but ``batch_size``; ``outputs`` is the number
    of classes of a multiclass model (1 otherwise). Returns the fitted scikit-learn
    estimator, ``epochs`` x :data:`~include.training.BOOSTING_ROUNDS_PER_EPOCH` rounds
    deep. Raises whatever scikit-learn or ``report`` raise.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import log_loss, mean_squared_error

    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
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
        if task == "regression":
            train_loss = float(mean_squared_error(target, estimator.predict(matrix)))
        else:
            train_loss = float(log_loss(target, estimator.predict_proba(matrix), labels=list(range(max(outputs, 2)))))
        report(EpochReport(epoch, train_loss, seconds))
    return estimator
