"""Registers the Models page with Airflow's plugin manager (which loads the files of this folder;
the ``mlops_airflow`` package itself is skipped by ``.airflowignore``)."""

from mlops_airflow.models_page.plugin import ModelsPagePlugin as ModelsPagePlugin
