"""Hyperparameter sweeps of the SIM pipeline on Ray Tune + Optuna.

``space`` reads and validates search-space files (no Ray import); ``trainable`` is the
function each Tune trial runs; ``runner`` starts or resumes a sweep and writes its summary.
"""
