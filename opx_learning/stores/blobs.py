"""Whole-object reads and writes on a local path or an `s3://bucket/key` URI (boto3 honours AWS_ENDPOINT_URL).

The S3 functions take the client to use (`s3_client(settings.region)`, or the backend's
`blob_client()`); without one they make a client of boto3's own configuration.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def s3_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client for `region` and `endpoint_url`.

    Args:
        region: the AWS region (`settings.region`); None: boto3's own configuration
            (`AWS_REGION` / `AWS_DEFAULT_REGION`, the config file).
        endpoint_url: the S3 endpoint; None: boto3's own (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`).
    """
    import boto3

    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key).

    Raises:
        ValueError: not an s3:// URI with a bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def put_bytes(uri: str, data: bytes, *, client: Any = None) -> None:
    """Write a whole object (`client`: the S3 client for s3:// URIs).

    A local file is written under a temporary name of its own (so concurrent writers never share
    one) and renamed over the target, so a reader sees the old or the new bytes, never a part.
    """
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        (client or s3_client()).put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged(path, data) as temporary:
        os.replace(temporary, path)


@contextlib.contextmanager
def staged(path: Path, data: bytes) -> Iterator[str]:
    """`data` written to a unique temporary file beside `path` (removed on exit unless renamed)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def get_bytes(uri: str, *, client: Any = None) -> bytes | None:
    """A whole object, or None when it does not exist (`client`: the S3 client for s3:// URIs)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        client = client or s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    path = Path(uri)
    return path.read_bytes() if local_exists(path) else None


def local_exists(path: str | Path) -> bool:
    """Whether a local file exists; an unreadable directory on the way raises (it is not "missing").

    Raises:
        OSError: the path cannot be examined (e.g. `PermissionError`), never reported as absent.
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def list_keys(uri_prefix: str, *, client: Any = None) -> list[str]:
    """Keys (relative to the bucket) of the S3 objects under an `s3://bucket/prefix` URI."""
    bucket, prefix = split_s3(uri_prefix)
    pages = (client or s3_client()).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
