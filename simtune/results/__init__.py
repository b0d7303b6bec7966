"""A finished sweep: its folder (``sweepdir``), its typed summary (``summary``), its trials and
configurations (``trials``) and the one ranking rule (``ranking``). No Ray, no MLflow."""
