"""Signed callbacks: the pure parts (retry schedule and outcome, Standard Webhooks signing); the
delivery step is `worker.services.callbacks`, the outbox's SQL `models.callbacks`."""
