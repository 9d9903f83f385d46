"""A real S3 endpoint for tests: moto's server (`python -m moto.server`) on a free loopback port, with one bucket.

Everything that talks to it (DVC's S3 remote, the S3 result storage through s3fs, boto3) finds it through the
environment alone, as a worker would find its object store: the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the region in AWS_DEFAULT_REGION and the address in AWS_ENDPOINT_URL (botocore reads it, and
s3fs and DVC create their clients through botocore).
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import wait_until_answers
from tests.test_serving import free_port

BUCKET = "attnflow-test"
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    env: dict[str, str]  # what a process needs to reach the bucket

    def client(self):
        """A boto3 client of the server, with its credentials given, not read from the environment."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip

    def keys(self, prefix: str = "") -> list[str]:
        """The keys in the bucket under prefix (read with boto3, apart from what is tested)."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def s3_env(endpoint: str) -> dict[str, str]:
    """moto accepts any credentials; real ones would come from the environment the same way."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


@contextmanager
def moto_server(log_dir: Path):
    """Start moto's S3 server, wait until it answers (at most STARTUP_SECONDS), create BUCKET; yield an S3Server and
    stop the server after, also on failure."""
    port, log_file = free_port(), log_dir / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    with log_file.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ,
        )  # fmt: skip
    try:
        deadline = time.time() + STARTUP_SECONDS
        wait_until_answers(f"{endpoint}/moto-api/", server, log_file, deadline, pause=0.2)
        s3 = S3Server(endpoint, BUCKET, s3_env(endpoint))
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.terminate()
        server.wait(30)
