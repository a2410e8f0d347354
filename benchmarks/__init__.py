"""What the project costs its users, against what they would otherwise use (``make bench``).

One module per section (parse, training, drift, serving, orchestration), each runnable
alone with ``python -m benchmarks.<section>``; ``python -m benchmarks`` runs them all and
writes ``benchmarks/RESULTS.md`` (:mod:`benchmarks.report`).
"""
