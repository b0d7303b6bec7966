"""Label-free model selection: validators scored on unlabelled target pixels (``select/<name>``).

Every ``select/<name>`` is higher = better; ``docs/selection.md`` defines them.
"""

PREFIX = "select/"
VALIDATORS = ("entropy", "im", "snd", "mixval", "mixval_intra", "mixval_inter", "dev")
SELECT_METRICS = tuple(PREFIX + name for name in VALIDATORS)  # every metric a run can log
