"""The test doubles every suite shares: an enqueuer that records instead of sending, and storage in
memory. They stand in at the two edges a test often does not need for real (the broker, the bucket);
the suites that test those edges use the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from genqueue.worker import enqueue


class RecordingEnqueuer:
    """Has what `genqueue.worker.enqueue.Enqueuer` offers; `sent` holds (step, job id) in order, with
    the task names of `enqueue` shortened to the step (`"submit"`, `"poll"`, `"store"`, `"cancel"`,
    `"observe"`)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.countdowns: list[float] = []
        self.observed: list[tuple[str, dict[str, Any]]] = []

    def send(self, task: str, args: list[Any], countdown: float = 0.0, **options: Any) -> None:
        self.sent.append((task.removeprefix("genqueue."), args[0]))
        self.countdowns.append(countdown)
        if task == enqueue.OBSERVE:
            self.observed.append((args[0], args[1]))

    def submit(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.send(enqueue.SUBMIT, [job_id])

    __call__ = submit

    def poll(self, job_id: str, countdown: float = 0.0) -> None:
        self.send(enqueue.POLL, [job_id], countdown)

    def store(self, job_id: str, countdown: float = 0.0) -> None:
        self.send(enqueue.STORE, [job_id], countdown)

    def cancel(self, job_id: str) -> None:
        self.send(enqueue.CANCEL, [job_id])

    def observe(self, job_id: str, prediction: dict[str, Any]) -> None:
        self.send(enqueue.OBSERVE, [job_id, prediction])

    def ids(self, step: str) -> list[str]:
        """The job ids sent to one step, in order."""
        return [job_id for s, job_id in self.sent if s == step]

    @property
    def submitted(self) -> list[str]:
        return self.ids("submit")

    @property
    def canceled(self) -> list[str]:
        return self.ids("cancel")

    @property
    def polled(self) -> list[str]:
        return self.ids("poll")


class MemoryStorage:
    """Has the `put`, `open` and `delete` of `genqueue.storage.Storage`; a missing key raises FileNotFoundError.
    `open` yields 7-byte chunks, so a reader that assumes one chunk is caught."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def open(self, key: str) -> tuple[Iterator[bytes], str, int]:
        if key not in self.objects:
            raise FileNotFoundError(key)
        data, ctype = self.objects[key]
        return iter([data[i:i + 7] for i in range(0, len(data), 7)]), ctype, len(data)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
