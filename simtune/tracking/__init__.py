"""MLflow tracking, free of Ray: reaching the store and finding runs (``store``), what a
run directory sends to MLflow and the run logger of a training (``artifacts``), and the
run and sweep figures (``figures``). The sweep's parent run and the Tune callback that
logs each trial live in ``simtune.sweep`` (``tracker``, ``mlflow_callback``).

A new tracking backend would sit beside ``store`` with the same small surface
(``connect``, ``search``, ``log_params``/``log_metrics``/``log_history``, artifacts).
"""
