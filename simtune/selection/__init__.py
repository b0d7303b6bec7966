"""Label-free model selection: validators scored on unlabelled target pixels (``select/<name>``)."""
