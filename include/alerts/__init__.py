"""Alerts: what an event says (:mod:`.message`), one builder per event (:mod:`.events`) and the
ledger of alerts already sent (:mod:`.ledger`). Sending goes through Airflow's notifiers, in
``mlops_airflow.alerts``; nothing here imports Airflow."""
