"""Airflow-facing pieces shared by the DAGs: params, the training operator, task runtime.

Imported while DAG files are parsed, so nothing here imports an ML library at
module level.
"""
