"""Rollouts: a gated version served beside the champion (shadow or canary) until live labels decide.

- :mod:`include.rollout.decision`: the decision (promote, continue, step, roll back), pure;
- :mod:`include.rollout.bootstrap`: the confidence intervals it reads;
- :mod:`include.rollout.guardrails`: the candidate's error rate and latency from the server's metrics;
- :mod:`include.rollout.records`: the rollout as the registry records it (alias ``candidate``, ``rollout.*`` tags);
- :mod:`include.rollout.controller`: starting a rollout, and carrying out a decision (serving, tags, aliases).

No module here imports Airflow; ``dags/ml_rollout.py`` and ``dags/ml_training.py`` call the controller.
"""
