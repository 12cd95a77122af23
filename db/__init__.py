"""The store: SQLAlchemy 2 models, engines and sessions, the repository (every query), and the
Alembic migrations. Imports `exportq` only; nothing here connects at import time."""
