"""Produce NannyML's CBPE ROC AUC figures that ``tests/unit/monitoring/test_cbpe.py`` compares against.

Run by hand in a scratch virtual environment, never by the tests (NannyML is not a project
dependency: it would bring FLAML, LightGBM, kaleido and a telemetry client)::

    python3.11 -m venv /tmp/nml
    /tmp/nml/bin/pip install nannyml==0.13.1 statsmodels
    NML_DISABLE_USAGE_LOGGING=1 /tmp/nml/bin/python tests/unit/monitoring/data/make_nannyml_cbpe_reference.py

(``statsmodels`` is imported by NannyML 0.13.1's plotting module but not declared by it, so a bare
install fails at ``import nannyml``.) The figures in the committed JSON were produced with NannyML
0.13.1, numpy 2.4.6, pandas 3.1.1 and scikit-learn 1.9.1 (recorded in the JSON's ``versions``).

Data: NannyML's own bundled synthetic binary classification dataset
(``nannyml.load_synthetic_binary_classification_dataset()``: a "work from home" model, 50,000
reference rows with labels and 50,000 analysis rows whose labels ship separately), read from
the package, nothing downloaded. All rows are kept: the scores have two decimals, so the three
vectors compress to well under 1 MB. The script writes

- ``nannyml_cbpe_synthetic.npz``: ``reference_probabilities``, ``reference_labels``,
  ``analysis_probabilities`` and ``analysis_labels`` (float64 / int8, in the dataset's row order);
- ``nannyml_cbpe_synthetic.json``: NannyML's figures.

NannyML is run on data frames rebuilt from exactly the arrays saved in the ``.npz``, so the tests
recompute from the same inputs. For each chunk size in :data:`CHUNK_SIZES` (size-based chunks in
row order, an incomplete last chunk kept, NannyML's default) the JSON records, per reference and
analysis chunk: the row range, NannyML's estimated ROC AUC, its sampling error and confidence
band, and the realised ROC AUC. It also records whether NannyML decided to calibrate
(``needs_calibration``) and, if so, the fitted isotonic regression's breakpoints.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
ARRAYS = HERE / "nannyml_cbpe_synthetic.npz"
FIGURES = HERE / "nannyml_cbpe_synthetic.json"
CHUNK_SIZES = (5000, 1200)


def _arrays() -> dict[str, np.ndarray]:
    reference, analysis, analysis_targets = nml.load_synthetic_binary_classification_dataset()
    analysis = analysis.merge(analysis_targets, on="id", how="left", validate="one_to_one")
    return {
        "reference_probabilities": reference["y_pred_proba"].to_numpy(dtype=np.float64),
        "reference_labels": reference["work_home_actual"].to_numpy(dtype=np.int8),
        "analysis_probabilities": analysis["y_pred_proba"].to_numpy(dtype=np.float64),
        "analysis_labels": analysis["work_home_actual"].to_numpy(dtype=np.int8),
    }


def _chunks(result: pd.DataFrame, period: str) -> list[dict]:
    rows = result[result[("chunk", "period")] == period]
    return [
        {
            "start_index": int(row[("chunk", "start_index")]),
            "end_index": int(row[("chunk", "end_index")]),
            "estimated_roc_auc": float(row[("roc_auc", "value")]),
            "sampling_error": float(row[("roc_auc", "sampling_error")]),
            "lower_confidence_boundary": float(row[("roc_auc", "lower_confidence_boundary")]),
            "upper_confidence_boundary": float(row[("roc_auc", "upper_confidence_boundary")]),
            "realized_roc_auc": float(row[("roc_auc", "realized")]),
        }
        for _, row in rows.iterrows()
    ]


def main() -> None:
    np.savez_compressed(ARRAYS, **_arrays())
    with np.load(ARRAYS) as saved:
        arrays = {name: saved[name] for name in saved.files}
    reference = pd.DataFrame({"y_pred_proba": arrays["reference_probabilities"], "y_true": arrays["reference_labels"]})
    analysis = pd.DataFrame({"y_pred_proba": arrays["analysis_probabilities"], "y_true": arrays["analysis_labels"]})

    runs = []
    for chunk_size in CHUNK_SIZES:
        estimator = nml.CBPE(
            y_pred_proba="y_pred_proba",
            y_true="y_true",
            problem_type="classification_binary",
            metrics=["roc_auc"],
            chunk_size=chunk_size,
        )
        estimator.fit(reference)
        result = estimator.estimate(analysis).to_df()
        regressor = estimator.calibrator._regressor
        runs.append(
            {
                "chunk_size": chunk_size,
                "needs_calibration": bool(estimator.needs_calibration),
                "isotonic_x_thresholds": regressor.X_thresholds_.tolist() if estimator.needs_calibration else None,
                "isotonic_y_thresholds": regressor.y_thresholds_.tolist() if estimator.needs_calibration else None,
                "reference_chunks": _chunks(result, "reference"),
                "analysis_chunks": _chunks(result, "analysis"),
            }
        )

    figures = {
        "source": "nannyml.load_synthetic_binary_classification_dataset(), all rows",
        "method": "nannyml.CBPE(problem_type='classification_binary', metrics=['roc_auc'], chunk_size=...)",
        "versions": {package: version(package) for package in ("nannyml", "numpy", "pandas", "scikit-learn")},
        "runs": runs,
    }
    FIGURES.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"{ARRAYS.name}: {ARRAYS.stat().st_size} bytes, {FIGURES.name}: {FIGURES.stat().st_size} bytes")


if __name__ == "__main__":
    main()
