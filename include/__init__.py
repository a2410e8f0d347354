"""Domain package of the model lifecycle: data, validation, training, evaluation,
registry, deployment, serving and monitoring.

Nothing in this package imports Airflow, and no module has import-time side
effects, so the same code runs in an Airflow task, in the training pod, in the
serving process and in tests.
"""
