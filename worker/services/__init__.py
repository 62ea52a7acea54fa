"""Plain functions the Celery tasks call: submit, poll, store, sweep. Testable without Celery."""
