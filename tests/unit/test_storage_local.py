"""LocalStorage: round trip, atomicity, key safety, exists/delete, output_key, make_storage."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genqueue.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    StorageError,
    StorageNotFound,
    make_storage,
    output_key,
)


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _read(storage: Storage, key: str) -> tuple[bytes, str, int]:
    chunks, content_type, size = storage.open(key)
    return b"".join(chunks), content_type, size


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def test_round_trip_reports_sha256_and_size(storage: LocalStorage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = output_key("job-1", 0, "image/png")

    obj = storage.put_stream(key, _chunks(data, 64 * 1024), "image/png")

    assert obj.key == key
    assert obj.size == len(data)
    assert obj.sha256 == hashlib.sha256(data).hexdigest()
    assert obj.content_type == "image/png"
    assert obj.uri == (storage.root / key).as_uri()
    assert isinstance(storage, Storage)
    body, content_type, size = _read(storage, key)
    assert body == data
    assert content_type == "image/png"
    assert size == len(data)


def test_empty_object(storage: LocalStorage) -> None:
    obj = storage.put_stream("empty.bin", iter([]), "application/octet-stream")
    assert obj.size == 0
    assert obj.sha256 == hashlib.sha256(b"").hexdigest()
    assert _read(storage, "empty.bin") == (b"", "application/octet-stream", 0)


def test_content_type_derived_from_extension(storage: LocalStorage) -> None:
    for ctype in ("image/jpeg", "image/webp", "image/gif", "image/svg+xml", "application/x-weird"):
        key = output_key("j", 1, ctype)
        storage.put_stream(key, [b"x"], ctype)
        expected = ctype if ctype != "application/x-weird" else "application/octet-stream"
        assert storage.open(key)[1] == expected


def test_overwrite_replaces_whole_object(storage: LocalStorage) -> None:
    storage.put_stream("a/b.png", [b"first version, long"], "image/png")
    storage.put_stream("a/b.png", [b"second"], "image/png")
    assert _read(storage, "a/b.png")[0] == b"second"


def test_failure_midway_leaves_no_object(storage: LocalStorage) -> None:
    class Boom(Exception):
        pass

    def failing() -> Iterator[bytes]:
        yield b"a" * 100_000
        yield b"b" * 100_000
        raise Boom("producer died")

    key = "jobs/j/0.png"
    with pytest.raises(Boom):
        storage.put_stream(key, failing(), "image/png")

    assert not storage.exists(key)
    with pytest.raises(StorageNotFound):
        storage.open(key)
    leftovers = [p for p in storage.root.rglob("*") if p.is_file()]
    assert leftovers == []


def test_failure_midway_keeps_previous_version(storage: LocalStorage) -> None:
    storage.put_stream("k.png", [b"old"], "image/png")

    def failing() -> Iterator[bytes]:
        yield b"new-partial"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        storage.put_stream("k.png", failing(), "image/png")
    assert _read(storage, "k.png")[0] == b"old"


@pytest.mark.parametrize(
    "key",
    ["../escape.png", "a/../../escape", "/etc/passwd", "a//b", "./a", "a/.", "", "a\\..\\b", "a\x00b"],
)
def test_unsafe_keys_rejected(storage: LocalStorage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put_stream(key, [b"x"], "image/png")
    with pytest.raises(ValueError):
        storage.open(key)
    with pytest.raises(ValueError):
        storage.exists(key)
    with pytest.raises(ValueError):
        storage.delete(key)
    assert not (storage.root.parent / "escape.png").exists()


def test_symlink_escaping_root_rejected(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (storage.root / "link").symlink_to(outside)
    with pytest.raises(ValueError):
        storage.put_stream("link/x.png", [b"x"], "image/png")
    assert list(outside.iterdir()) == []


def test_exists_and_delete(storage: LocalStorage) -> None:
    key = "jobs/j/3.webp"
    assert not storage.exists(key)
    storage.put_stream(key, [b"data"], "image/webp")
    assert storage.exists(key)
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # idempotent
    with pytest.raises(StorageNotFound):
        storage.open(key)


def test_directory_is_not_an_object(storage: LocalStorage) -> None:
    storage.put_stream("jobs/j/0.png", [b"x"], "image/png")
    assert not storage.exists("jobs/j")
    with pytest.raises(StorageNotFound):
        storage.open("jobs/j")


def test_open_iterator_can_be_closed_early(storage: LocalStorage) -> None:
    storage.put_stream("big.bin", [os.urandom(3 * 1024 * 1024)], "application/octet-stream")
    chunks, _, size = storage.open("big.bin")
    assert size == 3 * 1024 * 1024
    first = next(chunks)
    assert len(first) == 1024 * 1024
    chunks.close()  # type: ignore[attr-defined]
    assert list(chunks) == []


def test_check_and_describe(storage: LocalStorage) -> None:
    storage.check()
    assert storage.describe() == str(storage.root)
    assert storage.root.is_absolute()


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
def test_check_fails_when_not_writable(storage: LocalStorage) -> None:
    storage.root.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="not writable"):
            storage.check()
    finally:
        storage.root.chmod(0o700)


def test_check_fails_when_root_removed(storage: LocalStorage) -> None:
    storage.root.rmdir()
    with pytest.raises(StorageError, match="does not exist"):
        storage.check()


def test_root_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        LocalStorage(blocker / "sub")


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/png", "jobs/abc/0.png"),
        ("image/jpeg", "jobs/abc/0.jpg"),
        ("IMAGE/JPEG; q=1", "jobs/abc/0.jpg"),
        ("image/webp", "jobs/abc/0.webp"),
        ("image/gif", "jobs/abc/0.gif"),
        ("image/svg+xml", "jobs/abc/0.svg"),
        ("application/octet-stream", "jobs/abc/0.bin"),
        ("text/whatever", "jobs/abc/0.bin"),
        ("", "jobs/abc/0.bin"),
    ],
)
def test_output_key(content_type: str, expected: str) -> None:
    assert output_key("abc", 0, content_type) == expected


def test_output_key_is_deterministic_and_indexed() -> None:
    assert output_key("j1", 7, "image/png") == output_key("j1", 7, "image/png") == "jobs/j1/7.png"


@pytest.mark.parametrize(("job_id", "index"), [("", 0), ("a/b", 0), ("..", 0), ("ok", -1)])
def test_output_key_rejects_bad_input(job_id: str, index: int) -> None:
    with pytest.raises(ValueError):
        output_key(job_id, index, "image/png")


def test_make_storage_file_url_and_bare_path(tmp_path: Path) -> None:
    by_url = make_storage((tmp_path / "u").as_uri())
    assert isinstance(by_url, LocalStorage)
    assert by_url.root == (tmp_path / "u").resolve()
    assert by_url.root.is_dir()

    bare = make_storage(str(tmp_path / "bare"))
    assert isinstance(bare, LocalStorage)
    assert bare.root.is_dir()


def test_make_storage_s3_builds_without_network() -> None:
    storage = make_storage(
        "s3://my-bucket/some/prefix/",
        s3_endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIDSECRETISH",
        aws_secret_access_key="super-secret-value",
    )
    assert isinstance(storage, S3Storage)
    assert storage.bucket == "my-bucket"
    assert storage.prefix == "some/prefix"
    described = storage.describe() + repr(storage)
    assert described.startswith("s3://my-bucket/some/prefix @ http://127.0.0.1:1")
    assert "super-secret-value" not in described
    assert "AKIDSECRETISH" not in described


@pytest.mark.parametrize(
    "url", ["ftp://x/y", "file://relative/dir", "s3:///prefix", "s3://k:s@bucket/p", "  "]
)
def test_make_storage_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        make_storage(url)
    assert "k:s" not in str(info.value)
