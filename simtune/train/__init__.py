"""Training: builders, the one loop shared by both stages, its hooks, and the pipeline."""
