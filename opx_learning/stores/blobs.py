"""Whole-object reads and writes on a local path or an `s3://bucket/key` URI (boto3 honours AWS_ENDPOINT_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opx_learning.config import get_settings


def s3_client() -> Any:
    """A boto3 S3 client for the configured region and endpoint (read from the environment now)."""
    import boto3

    return boto3.client("s3", region_name=get_settings().region)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key).

    Raises:
        ValueError: not an s3:// URI with a bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def put_bytes(uri: str, data: bytes) -> None:
    """Write a whole object; local files are replaced atomically."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def get_bytes(uri: str) -> bytes | None:
    """A whole object, or None when it does not exist."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        client = s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    path = Path(uri)
    return path.read_bytes() if path.exists() else None


def list_keys(uri_prefix: str) -> list[str]:
    """Keys (relative to the bucket) of the S3 objects under an `s3://bucket/prefix` URI."""
    bucket, prefix = split_s3(uri_prefix)
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
