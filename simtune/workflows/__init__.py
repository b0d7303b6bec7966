"""What users do with finished runs and sweeps: retrain the best configuration, report a sweep,
run the paired ablation. Each workflow reads run and sweep folders and writes MLflow runs; none
starts Ray."""
