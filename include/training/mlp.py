"""The torch MLP of ``torch_mlp`` models: its layers, its per-row forward pass and its threads.

Plain functions over an ``nn.Sequential``, so a state dict loads without any custom class.
torch is imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import Any

from include.training import TORCH_THREADS_ENV

HIDDEN_SIZES = (64, 32)
DROPOUT = 0.1


class ThreadsError(ValueError):
    """``MLOPS_TORCH_THREADS`` is not a positive integer."""


def build_mlp(
    input_dim: int,
    hidden_sizes: tuple[int, ...] | list[int] = HIDDEN_SIZES,
    dropout: float = DROPOUT,
    output_dim: int = 1,
):
    """A plain ``nn.Sequential`` so a state dict loads without any custom class; ``output_dim``
    logits (1 for binary and regression, one per class for multiclass). Returns the untrained module.
    """
    from torch import nn

    layers: list[Any] = []
    width = input_dim
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def torch_device_name(device) -> str:
    """The device's name for logs and tags: ``cuda:<GPU name>`` for a GPU, else its type (e.g. ``cpu``)."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def mlp_logits(network, inputs):
    """The network's logits, each row computed on its own: a one-row matrix product per row.

    Returns a float tensor of shape (rows, outputs), like ``network(inputs)``.
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
    return hidden.reshape(hidden.shape[0], -1)


def limit_torch_threads() -> None:
    """Cap intra-op threads at the CPUs this process may actually use.

    torch sizes its pool from the host's cores, which inside a CPU-limited
    container oversubscribes and makes small-batch latency jittery; the network
    is so small that more threads than CPUs never helps. Raises :class:`ThreadsError`
    when ``MLOPS_TORCH_THREADS`` is set to anything but a positive integer.
    """
    import torch

    override = os.environ.get(TORCH_THREADS_ENV)
    if override:
        try:
            threads = int(override)
        except ValueError:
            raise ThreadsError(f"{TORCH_THREADS_ENV} must be a positive integer, got {override!r}") from None
        if threads < 1:
            raise ThreadsError(f"{TORCH_THREADS_ENV} must be a positive integer, got {override!r}")
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = min(torch.get_num_threads(), available)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
