"""The job lifecycle as pure decisions: `(snapshot, what Replicate said, now, policy) -> Decision`.

No I/O here and no ORM rows: a step in `genqueue.worker.services` loads a `JobSnapshot`, makes its one
call out (Replicate, storage), asks a function here what that means, and writes the `Decision` with
one compare-and-set. This package is where to read (and unit-test) what happens to a job.
"""
