"""S3Storage against a real SeaweedFS S3 server on loopback."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from genqueue.storage import (
    S3Storage,
    StorageError,
    StorageNotFound,
    build_s3_client,
    make_storage,
    output_key,
)
from tests.support.seaweed import SeaweedS3, seaweed_s3

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweed_s3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="module")
def client(seaweed: SeaweedS3) -> S3Client:
    return build_s3_client(
        endpoint_url=seaweed.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
    )


@pytest.fixture
def bucket(client: S3Client) -> str:
    name = f"gq-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def _storage(seaweed: SeaweedS3, url: str) -> S3Storage:
    storage = make_storage(
        url,
        s3_endpoint_url=seaweed.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        aws_region="us-east-1",
    )
    assert isinstance(storage, S3Storage)
    return storage


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_round_trip_with_prefix(seaweed: SeaweedS3, client: S3Client, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}/outputs/v1")
    storage.check()
    data = os.urandom(300_000)
    key = output_key("job-42", 0, "image/webp")

    obj = storage.put_stream(key, _chunks(data, 10_000), "image/webp")

    assert obj.key == key
    assert obj.uri == f"s3://{bucket}/outputs/v1/{key}"
    assert obj.size == len(data)
    assert obj.sha256 == hashlib.sha256(data).hexdigest()
    assert obj.content_type == "image/webp"

    chunks, content_type, size = storage.open(key)
    assert b"".join(chunks) == data
    assert content_type == "image/webp"
    assert size == len(data)

    head = client.head_object(Bucket=bucket, Key=f"outputs/v1/{key}")
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"]["sha256"] == obj.sha256
    assert storage.describe() == f"s3://{bucket}/outputs/v1 @ {seaweed.endpoint_url}"
    assert seaweed.secret_key not in storage.describe()


def test_large_streamed_object_multipart(seaweed: SeaweedS3, client: S3Client, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}")
    block = os.urandom(MiB)
    total = 20 * MiB + 123
    expected = hashlib.sha256()

    def produce() -> Iterator[bytes]:
        sent = 0
        while sent < total:
            piece = block[: min(256 * 1024, total - sent)]
            expected.update(piece)
            sent += len(piece)
            yield piece

    obj = storage.put_stream("big/object.bin", produce(), "application/octet-stream")
    assert obj.size == total
    assert obj.sha256 == expected.hexdigest()
    assert obj.uri == f"s3://{bucket}/big/object.bin"

    chunks, content_type, size = storage.open("big/object.bin")
    assert size == total
    assert content_type == "application/octet-stream"
    got = hashlib.sha256()
    got_size = 0
    for chunk in chunks:
        assert len(chunk) <= MiB
        got.update(chunk)
        got_size += len(chunk)
    assert (got_size, got.hexdigest()) == (total, obj.sha256)
    assert client.head_object(Bucket=bucket, Key="big/object.bin")["Metadata"]["sha256"] == obj.sha256


def test_failure_midway_leaves_no_object(seaweed: SeaweedS3, client: S3Client, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}/p")

    class Boom(Exception):
        pass

    def failing() -> Iterator[bytes]:
        for _ in range(12):  # 12 MiB: past the spool's in-memory limit and one part size
            yield os.urandom(MiB)
        raise Boom("upstream download broke")

    with pytest.raises(Boom):
        storage.put_stream("jobs/j/0.png", failing(), "image/png")

    assert not storage.exists("jobs/j/0.png")
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_missing_object(seaweed: SeaweedS3, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}/p")
    assert not storage.exists("nope.png")
    with pytest.raises(StorageNotFound):
        storage.open("nope.png")
    storage.delete("nope.png")  # idempotent


def test_exists_and_delete(seaweed: SeaweedS3, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}")
    storage.put_stream("a/b.gif", [b"GIF89a"], "image/gif")
    assert storage.exists("a/b.gif")
    storage.delete("a/b.gif")
    assert not storage.exists("a/b.gif")


def test_unsafe_keys_rejected(seaweed: SeaweedS3, bucket: str) -> None:
    storage = _storage(seaweed, f"s3://{bucket}")
    for key in ("../x", "/abs", "a//b"):
        with pytest.raises(ValueError):
            storage.put_stream(key, [b"x"], "image/png")


def test_check_missing_bucket_has_clear_message(seaweed: SeaweedS3) -> None:
    storage = _storage(seaweed, "s3://gq-no-such-bucket/prefix")
    with pytest.raises(StorageError) as info:
        storage.check()
    message = str(info.value)
    assert "gq-no-such-bucket" in message
    assert "does not exist" in message
    assert seaweed.endpoint_url in message
    assert seaweed.secret_key not in message


def test_put_into_missing_bucket_is_storage_error(seaweed: SeaweedS3) -> None:
    storage = _storage(seaweed, "s3://gq-no-such-bucket")
    with pytest.raises(StorageError) as info:
        storage.put_stream("x.png", [b"x"], "image/png")
    assert seaweed.secret_key not in str(info.value)
    assert info.value.reason == "NoSuchBucket"  # the cause alone: a job's error may show it


def test_put_to_unreachable_endpoint_names_the_cause_apart_from_the_endpoint() -> None:
    endpoint = "http://127.0.0.1:9"
    client = build_s3_client(endpoint_url=endpoint, aws_access_key_id="fake-key-id",
                             aws_secret_access_key="fake-secret-not-real", max_attempts=1)
    storage = S3Storage("gq-bucket", client=client, endpoint_url=endpoint)
    with pytest.raises(StorageError) as info:
        storage.put_stream("jobs/j/0.png", [b"x"], "image/png")
    assert endpoint in str(info.value)  # the whole message, for the worker's log
    assert info.value.reason == "EndpointConnectionError"


def test_check_with_bad_credentials(seaweed: SeaweedS3, bucket: str) -> None:
    storage = make_storage(
        f"s3://{bucket}",
        s3_endpoint_url=seaweed.endpoint_url,
        aws_access_key_id="wrong-key-id",
        aws_secret_access_key="wrong-secret-value",
    )
    with pytest.raises(StorageError) as info:
        storage.check()
    assert "wrong-secret-value" not in str(info.value)
    assert "wrong-key-id" not in str(info.value)


def test_check_unreachable_endpoint() -> None:
    storage = S3Storage(
        "bucket",
        client=build_s3_client(
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="k",
            aws_secret_access_key="s",
            connect_timeout=1,
            read_timeout=1,
            max_attempts=1,
        ),
        endpoint_url="http://127.0.0.1:9",
    )
    with pytest.raises(StorageError, match="cannot reach S3"):
        storage.check()
