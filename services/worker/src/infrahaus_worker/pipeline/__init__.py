"""The container creation pipeline, one module per step."""
