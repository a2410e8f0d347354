"""Kubernetes resource quantities, as the training pod and the serving manifests check them."""

from __future__ import annotations

import pytest

from include.util.k8s import is_quantity


@pytest.mark.parametrize("text", ["4", "500m", "1.5", ".5", "16Gi", "2Gi", "1e3", "1E3", "+4", "5n", "2k", "0"])
def test_quantities_kubernetes_takes_are_accepted(text):
    assert is_quantity(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lots",
        "16 GB",
        "16 G",
        " 4",
        "1_000",
        "-1",
        "NaN",
        "Infinity",
        "1ki",
        "\u0664",
        None,
        4,
    ],
)
def test_text_kubernetes_refuses_is_not_a_quantity(text):
    # spaces, '_', a sign '-', NaN and non-ASCII digits would pass Decimal, inside parse_quantity
    assert is_quantity(text) is False
