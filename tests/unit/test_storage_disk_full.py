"""A full disk under each backend's writes: a StorageError naming the cause, never a bare OSError (the
store step retries a StorageError; anything else crashed the task, and the sweeper's re-sends ended the
job as `too_many_deliveries`), and nothing left behind.

The disk is /dev/full, the kernel's device whose every write fails with ENOSPC: the temporary file a
backend opens is swapped for it, so the failure is the real one, at the moment the bytes reach the
kernel (a write, or the flush of a buffer). tests/chaos/test_storage_faults.py fills a real filesystem.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

from genqueue.storage import LocalStorage, S3Storage, StorageError, build_s3_client, output_key

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")


@pytest.fixture
def full_mkstemp(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """LocalStorage's temporary files are created as usual (so their clean-up can be checked), but
    written through a descriptor of /dev/full."""
    made: list[str] = []
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)
        os.close(fd)
        made.append(name)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return made


# Non-empty data only: an empty object would reach os.fchmod on the /dev/full descriptor.
@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024], ids=["buffered-fails-at-flush", "fails-at-write"])
def test_local_disk_full_is_a_storage_error_and_leaves_nothing(tmp_path: Path, full_mkstemp: list[str],
                                                               size: int) -> None:
    storage = LocalStorage(tmp_path / "store")
    key = output_key("job-1", 0, "image/png")
    with pytest.raises(StorageError) as info:
        storage.put_stream(key, [os.urandom(size)], "image/png")
    assert info.value.reason == "No space left on device"
    assert "No space left on device" in str(info.value)
    assert str(tmp_path) not in info.value.reason  # the cause alone, without the folder
    assert full_mkstemp and not any(os.path.exists(n) for n in full_mkstemp)
    assert not storage.exists(key)
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


def test_s3_spool_on_a_full_disk_is_a_storage_error_before_any_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    # A spool past spool_max_bytes rolls over to a TemporaryFile: /dev/full here. The endpoint is never
    # reached (nothing listens there); the failure must come from the spool.
    def temporary_file(**_: Any) -> IO[bytes]:
        return open("/dev/full", "w+b")  # the spool closes it

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    client = build_s3_client(endpoint_url="http://127.0.0.1:9", aws_access_key_id="fake-key-id",
                             aws_secret_access_key="fake-secret-not-real", max_attempts=1)
    storage = S3Storage("bucket", client=client, endpoint_url="http://127.0.0.1:9", spool_max_bytes=1)
    with pytest.raises(StorageError) as info:
        storage.put_stream("jobs/j/0.png", [b"x" * 1000, b"y" * 1000], "image/png")
    assert info.value.reason == "No space left on device"
    assert "spooling" in str(info.value)
