"""An S3-compatible endpoint for the tests: moto's server mode (the ``moto`` package's S3 emulator, an HTTP
server speaking the S3 API, conditional writes included), started by the tests on 127.0.0.1 on a free port.
It is an emulator, not AWS: what the tests show on it is S3's documented behaviour as moto implements it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

KEY, SECRET = "emulator-key", "emulator-secret"  # moto accepts any credentials


@dataclass
class MotoS3:
    """A running moto S3 emulator: its endpoint and the options a data root on it needs."""

    server: Any
    endpoint: str

    @classmethod
    def start(cls) -> MotoS3:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(server, f"http://{host}:{port}")

    def stop(self) -> None:
        self.server.stop()

    @property
    def options(self) -> dict[str, Any]:
        """fsspec (s3fs) options for the emulator: ``RETRAINER_DATA_STORAGE_OPTIONS``."""
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET}

    def env(self, url: str) -> dict[str, str]:
        """The environment that puts the data root at ``url`` on the emulator."""
        return {"RETRAINER_DATA_ROOT": url, "RETRAINER_DATA_STORAGE_OPTIONS": json.dumps(self.options)}

    def new_bucket(self) -> str:
        """A fresh, empty bucket; returns its ``s3://`` URL."""
        import boto3

        name = f"retrainer-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return f"s3://{name}"
