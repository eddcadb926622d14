"""The neutral layer below the library and the runner: params loading and validation, the model registry."""
