"""Airflow-facing pieces shared by the DAGs: params, the training operator, task runtime.

Imported while DAG files are parsed, so nothing here imports an ML library at
module level; ``training_pod``, which imports the Kubernetes provider, is imported
only when the kubernetes profile builds its ``train`` task.
"""
