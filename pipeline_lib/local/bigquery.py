"""The BigQuery emulator: bqemulator (DuckDB behind BigQuery's REST and gRPC APIs).

It runs offline only with DuckDB extensions installed from PyPI wheels beforehand:
DuckDB would otherwise try to download them. DuckDB keeps extensions under
``$HOME/.duckdb``, so the emulator gets a HOME of its own inside its folder.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from pipeline_lib.config import LOCAL_HOST, Settings
from pipeline_lib.local.process import LocalService, Notify, ServiceError

# Extension packages on PyPI that carry DuckDB extension files the emulator loads.
EXTENSION_PACKAGES = ("duckdb_extension_spatial", "duckdb_extension_avro")


class BigQueryEmulator(LocalService):
    name = "bigquery"
    start_timeout = 60.0

    def __init__(self, settings: Settings, notify: Notify | None = None) -> None:
        super().__init__(settings.home, notify)
        self.settings = settings

    @property
    def ports(self) -> dict[str, int]:
        return {
            "rest": self.settings.bigquery_port,
            "grpc": self.settings.bigquery_emulator_grpc_port,
        }

    @property
    def endpoint(self) -> str:
        return f"http://{LOCAL_HOST}:{self.settings.bigquery_port}"

    @property
    def home_dir(self) -> Path:
        return self.folder / "home"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sys; from bqemulator.cli import main; sys.argv[0] = 'bqemulator'; "
            "sys.exit(main())",
            "start",
            "--rest-host",
            LOCAL_HOST,
            "--rest-port",
            str(self.settings.bigquery_port),
            "--grpc-host",
            LOCAL_HOST,
            "--grpc-port",
            str(self.settings.bigquery_emulator_grpc_port),
            "--persistent",
            "--data-dir",
            str(self.data_dir),
            "--project",
            self.settings.gcp_project,
            "--log-level",
            "warning",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.home_dir)
        return env

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def prepare(self) -> None:
        """Install the bundled DuckDB extensions into the emulator's private HOME."""
        try:
            import bqemulator  # noqa: F401
            import duckdb
        except ImportError:
            raise ServiceError(
                "The BigQuery emulator needs `bqemulator` and `duckdb`; install the project "
                "with `pip install -e .` (or `make install`)."
            ) from None
        version = duckdb.__version__
        target = self.home_dir / ".duckdb" / "extensions"
        for package in EXTENSION_PACKAGES:
            try:
                module = __import__(package)
            except ImportError:
                continue
            files = list(
                Path(module.__file__).parent.glob(f"extensions/v{version}/*.duckdb_extension")
            )
            for extension_file in files:
                installed = list(target.glob(f"v{version}/*/{extension_file.name}"))
                if installed:
                    continue
                connection = duckdb.connect(config={"extension_directory": str(target)})
                try:
                    connection.execute(f"INSTALL '{extension_file}'")
                finally:
                    connection.close()
        if not any(target.glob(f"v{version}/*/spatial.duckdb_extension")):
            raise ServiceError(
                f"DuckDB {version} has no bundled spatial extension: install the matching "
                f"`duckdb-extension-spatial=={version}` (pinned in pyproject.toml)."
            )
