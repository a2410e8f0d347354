"""Watching the served model once it is in production.

:mod:`include.monitoring.inference_log` keeps every prediction the server makes, and
the labels that arrive later, as date-partitioned Parquet that the drift check reads
back one window at a time; :mod:`include.monitoring.drift` compares such a window
with the data the champion learned from (its parts: ``window``, ``reference``,
``drift_report``, ``drift_store``), and :mod:`include.monitoring.decision` decides
whether to retrain on it. :mod:`include.simulation.traffic` is the demo's client: it
sends days of generated customers to a running server and lands their labels.
"""
