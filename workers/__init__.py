"""The worker side of exportq: the Celery app and tasks, and `workers.export`, the pipeline."""
