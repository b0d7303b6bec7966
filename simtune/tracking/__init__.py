"""MLflow tracking, free of Ray: the store (``store``), experiments and the UI's views
(``experiments``), names (``naming``), the sweep's runs (``sweep``), what a run directory sends
(``artifacts``, ``datasets``) and the model registry (``registry``); the Tune callback is in
``simtune.sweep.mlflow_callback``."""
