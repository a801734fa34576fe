"""S3 for the lake tests: one `moto_server` per test session (services.s3_server), each test
under its own prefix of the bucket, reached through the standard AWS_* variables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from segment_assets_tests.services import S3, s3_server

BUCKET = "segment-lake"


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3]:
    with s3_server(BUCKET) as server:
        yield server


@pytest.fixture
def s3_lake_url(moto_s3: S3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh s3:// lake root on the moto server, with the AWS_* variables pointing at it."""
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def lake_env(moto_s3: S3) -> dict[str, str]:
    return {**os.environ, **moto_s3.env}
