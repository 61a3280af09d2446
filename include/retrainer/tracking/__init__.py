"""MLflow: the client, the model registry and its history, model artifacts."""
