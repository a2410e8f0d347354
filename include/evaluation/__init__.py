"""Evaluation: score challenger and champion on the same held-out rows
(:mod:`include.evaluation.evaluate`) and decide whether the challenger may be
promoted (:mod:`include.evaluation.gate`).
"""
