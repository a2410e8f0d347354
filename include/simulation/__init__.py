"""The demo's stand-ins for a production: synthetic data and the traffic that reaches the server.

:mod:`include.simulation.generate` lands seeded daily partitions of the demo
``customer_churn`` dataset, with covariate or concept drift from a chosen day;
:mod:`include.simulation.traffic` sends days of generated customers to a running
model server and lands their labels. Neither is part of the pipeline: the DAGs
never import them, and a user's own data goes through :mod:`include.data.ingest`
and :mod:`include.monitoring.replay` instead.
"""
