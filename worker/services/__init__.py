"""The steps the Celery tasks call: submit, poll (and cancel), pushed, store, sweep.

Each is: load a snapshot -> one call out (Replicate, storage) -> a pure decision from
`genqueue.worker.lifecycle` -> one compare-and-set (`writes.commit`) -> the follow-up it returns.
Plain functions of a `WorkerContext`, testable without Celery.
"""
