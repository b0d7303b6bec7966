"""Tune experiments of jobs that are not a search's trials: a retrain's fresh seeds (``seeds``) and
the stages a sweep's trials share, trained before them (``shared``)."""
