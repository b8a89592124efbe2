"""The BigQuery emulator: bqemulator (DuckDB behind BigQuery's REST and gRPC APIs).

It runs offline only with DuckDB extensions installed from PyPI wheels beforehand:
DuckDB would otherwise try to download them. DuckDB keeps extensions under
``$HOME/.duckdb``, so the emulator gets a HOME of its own inside its folder.

It runs with time travel off (:func:`without_table_copies`): to answer
``FOR SYSTEM_TIME AS OF``, bqemulator copies the whole table after every write, so
each load costs time and disk in proportion to the table, not the batch. And its
Storage Write API touches DuckDB from the event loop's thread only
(:func:`write_api_on_event_loop`): from gRPC's worker threads it hung the emulator.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from pipeline_lib.core.config import LOCAL_HOST, Settings
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
            "from pipeline_lib.local.bigquery import serve; serve()",
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
        # No time travel: a query AS OF a past time is refused with a clear error.
        env["BQEMU_TIME_TRAVEL_RETENTION_DAYS"] = "0"
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


def without_table_copies() -> None:
    """Make bqemulator's writes copy nothing for time travel.

    bqemulator answers ``FOR SYSTEM_TIME AS OF`` from a full copy of the table made
    after every write (``CREATE TABLE snapshot AS SELECT * FROM table``, under the write
    lock). Real BigQuery's time travel costs a load nothing; here a 300-row load took
    60 ms on an empty table and over 400 ms at 40,000 rows, queries waited behind the
    copies, and a benchmark home grew to 2 GB. The pipeline never reads the past of a
    table, so a write still tells its dependents (query cache, materialized views)
    that the table changed, and copies nothing.
    """
    from bqemulator.domain.events import TableDataChanged
    from bqemulator.versioning.snapshots import SnapshotManager

    def record_change(self: Any, project_id: str, dataset_id: str, table_id: str) -> None:
        self._events.publish(TableDataChanged(project_id, dataset_id, table_id))

    SnapshotManager.record_change = record_change


# The methods of the Write API's AppendRows call that read or write DuckDB (directly,
# or through the catalog, which lives in DuckDB too).
APPEND_DUCKDB_METHODS = ("_bind_stream_to_target", "_perform_append")


def write_api_on_event_loop() -> None:
    """Run bqemulator's AppendRows work on the thread that serves REST.

    bqemulator keeps one DuckDB connection. REST requests and the Write API's unary
    calls use it on the event loop's thread; the AppendRows call is a synchronous
    stream handler, so grpc.aio runs it on a worker thread, which used the same
    connection, guarded by a lock of its own only. With the pipeline's poll queries
    running while a consumer appended, the emulator hung (py-spy: the loop in a
    query's ``execute``, the worker in ``unregister`` after an insert), and a query's
    result could be read off the connection after the other thread's statement had
    replaced it. The append's DuckDB steps now run as calls on the event loop, between
    REST requests, while the worker thread waits for them.
    """
    from bqemulator.grpc_api.write_servicer import BigQueryWriteHandler

    if getattr(BigQueryWriteHandler, "_pipeline_on_loop", False):
        return
    original_init = BigQueryWriteHandler.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._pipeline_loop = asyncio.get_running_loop()  # built by the server's start()

    def on_loop(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            loop = self._pipeline_loop
            try:
                if asyncio.get_running_loop() is loop:
                    return method(self, *args, **kwargs)
            except RuntimeError:  # no loop runs on this thread: a gRPC worker
                pass

            async def run() -> Any:
                return method(self, *args, **kwargs)

            return asyncio.run_coroutine_threadsafe(run(), loop).result()

        return call

    BigQueryWriteHandler.__init__ = init
    for name in APPEND_DUCKDB_METHODS:
        setattr(BigQueryWriteHandler, name, on_loop(getattr(BigQueryWriteHandler, name)))
    BigQueryWriteHandler._pipeline_on_loop = True


def serve(argv: list[str] | None = None) -> None:
    """The emulator's command line (``bqemulator start ...``), patched as described above."""
    from bqemulator.cli import main

    without_table_copies()
    write_api_on_event_loop()
    main(args=sys.argv[1:] if argv is None else argv, prog_name="bqemulator")
