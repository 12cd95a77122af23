"""The exportq HTTP API (FastAPI): `create_app()` in `api.app`. Torch-free; it talks to the
workers only through the broker, by task name."""
