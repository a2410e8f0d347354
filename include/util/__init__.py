"""Generic plumbing the domain packages share, one home per mechanism (no Airflow, no ML imports)."""
