"""One-shot: create the object-storage bucket named by STORAGE_URL (idempotent).

Run by the `createbucket` compose service inside the genqueue image (boto3 is already a
dependency there). It talks to the store through the S3 API with the same credentials the
api and workers use, so a success here also proves those credentials work.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
# Wrong credentials will not fix themselves: fail at once instead of retrying until the deadline.
FATAL = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName"}


def bucket_from_storage_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SystemExit(f"STORAGE_URL must look like s3://bucket/prefix, got {url!r}")
    return parsed.netloc


def main() -> int:
    bucket = bucket_from_storage_url(os.environ["STORAGE_URL"])
    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=10),
    )
    deadline = time.monotonic() + float(os.environ.get("CREATE_BUCKET_TIMEOUT", "60"))
    while True:
        try:
            try:
                client.create_bucket(Bucket=bucket)
                print(f"created bucket {bucket}", flush=True)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ALREADY_THERE:
                    raise
                print(f"bucket {bucket} already exists", flush=True)
            client.head_bucket(Bucket=bucket)
            return 0
        except (BotoCoreError, ClientError) as exc:
            fatal = isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in FATAL
            if fatal or time.monotonic() > deadline:
                print(f"could not create bucket {bucket}: {exc}", file=sys.stderr, flush=True)
                return 1
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
