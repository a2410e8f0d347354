"""Training: feature preprocessing, the served model (one pyfunc holding the
preprocessing and the estimator) and the training command line the GPU pod runs.

Heavy libraries (torch, scikit-learn, mlflow) are imported by the modules that
need them, never here, so DAG files can read these constants at parse time.
"""

MODEL_TYPES = ("torch_mlp", "sklearn_hgb")
# sklearn_hgb has no epochs: one "epoch" is this many boosting rounds
BOOSTING_ROUNDS_PER_EPOCH = 10
# used when a run gives no learning rate: boosting wants a rate ~100x an Adam-trained MLP's
DEFAULT_LEARNING_RATES = {"torch_mlp": 0.001, "sklearn_hgb": 0.1}
# an override for the inference thread count, e.g. 1 per worker when a server forks several
TORCH_THREADS_ENV = "MLOPS_TORCH_THREADS"
# a multiclass model's output column per class: probability_<class>
PROBABILITY_PREFIX = "probability_"
# the logged model's metadata entry listing the dataset spec's nullable features: the server
# accepts a null (or an absent value) in those features only
NULLABLE_FEATURES_METADATA = "nullable_features"


class ModelError(ValueError):
    """The model cannot be trained or loaded with what it was given."""
