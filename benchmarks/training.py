"""Training: epoch time on the demo data, on the CPU and, where there is one, on a GPU.

The data is the demo's training window (28 days x 400 rows, the train part of the
holdout split); the models are those of the trigger form with its defaults
(``torch_mlp``: 10 epochs of batch 256; ``sklearn_hgb``: 10 epochs of
``BOOSTING_ROUNDS_PER_EPOCH`` boosting rounds). Epoch times are the ones the
trainer itself reports (``TabularClassifier.history``), without the first epoch,
which also pays one-off warm-up. Each fit runs in a fresh interpreter; the CPU
figures hide any GPU from torch (``CUDA_VISIBLE_DEVICES=""``).

    python -m benchmarks.training
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.common import gpu_description, median, project_env, run_json, runs, save
from include.training import MODEL_TYPES

EPOCHS = 10


def run_case(model_type: str) -> dict:
    import time

    from benchmarks.model import demo_frame
    from include.data.split import holdout_split
    from include.training import DEFAULT_LEARNING_RATES
    from include.training.model import TabularClassifier
    from include.training.preprocessing import TabularPreprocessor

    spec, frame = demo_frame()
    train, _ = holdout_split(frame, spec)
    started = time.perf_counter()
    model = TabularClassifier(model_type).fit(
        train[spec.feature_names],
        train[spec.target],
        TabularPreprocessor.from_spec(spec),
        epochs=EPOCHS,
        learning_rate=DEFAULT_LEARNING_RATES[model_type],
        batch_size=256,
    )
    return {
        "model_type": model_type,
        "device": model.device,
        "rows": len(train),
        "epoch_seconds": [report.seconds for report in model.history],
        "fit_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    case = sub.add_parser("case")
    case.add_argument("--model-type", choices=MODEL_TYPES, required=True)
    args = parser.parse_args(argv)
    if args.command == "case":
        print(json.dumps(run_case(args.model_type)))
        return 0

    gpu = gpu_description()
    devices = {"cpu": project_env(CUDA_VISIBLE_DEVICES="")}
    if gpu:
        devices["gpu"] = project_env()
    results = []
    for model_type in MODEL_TYPES:
        for device, env in devices.items():
            if device == "gpu" and model_type != "torch_mlp":
                continue  # gradient boosting trains on the CPU whatever the machine has
            fits = [
                run_json(["-m", "benchmarks.training", "case", "--model-type", model_type], env=env)
                for _ in range(runs(3))
            ]
            epochs = [seconds for fit in fits for seconds in fit["epoch_seconds"][1:]]
            result = {
                "model_type": model_type,
                "device": device,
                "device_name": fits[0]["device"],
                "rows": fits[0]["rows"],
                "fits": len(fits),
                "epoch_seconds": median(epochs),
                "first_epoch_seconds": median([fit["epoch_seconds"][0] for fit in fits]),
                "fit_seconds": median([fit["fit_seconds"] for fit in fits]),
            }
            print(
                f"  training {model_type} on {result['device_name']}: {1000 * result['epoch_seconds']:.0f} ms "
                f"per epoch ({result['rows']} rows)",
                flush=True,
            )
            results.append(result)
    save("training", {"gpu": gpu, "epochs": EPOCHS, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
