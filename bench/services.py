"""The benchmark's services and what every figure shares.

The pipeline figures run on benchmark services of their own (``.pipeline-bench/``,
ports 39092/34443/39050), started through ``pipeline_lib.local`` and stopped at the
end if the benchmark started them; the cluster figures add a three-broker cluster
(``.pipeline-bench-cluster/``, ports 39192-39197) beside them, the secure figure a
broker in secure mode (``.pipeline-bench-secure/``, ports 39292/39293), the class figure
three brokers in secure mode (``.pipeline-bench-class/``, ports 39392-39397). Each figure
asks :func:`services` for names of its own (:meth:`BenchServices.fresh`).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline_lib.core.config import PROJECT_ROOT, Settings
from pipeline_lib.core.names import run_names
from pipeline_lib.home import load_settings
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

SIZES = {"tiny": 0.01, "full": 1.0}
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)

BENCH_CLUSTER_HOME = PROJECT_ROOT / ".pipeline-bench-cluster"
BENCH_SECURE_HOME = PROJECT_ROOT / ".pipeline-bench-secure"
BENCH_CLASS_HOME = PROJECT_ROOT / ".pipeline-bench-class"
BENCH_ENVIRONMENT = {
    "PIPELINE_TARGET": "local",
    "PIPELINE_HOME": str(PROJECT_ROOT / ".pipeline-bench"),
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39092",
    "KAFKA_CONTROLLER_PORT": "39093",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:34443",
    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:39050",
    "BIGQUERY_EMULATOR_GRPC_PORT": "39060",
}


def count_for(size: str, full: int, floor: int) -> int:
    """How many of something a figure takes at ``size``: ``full`` scaled, at least ``floor``."""
    return max(floor, int(full * SIZES[size]))


def rate_of(iterable, count: int) -> float:
    """Items per second ``iterable`` yields over its first ``count``."""
    started = time.perf_counter()
    consumed = sum(1 for _ in itertools.islice(iterable, count))
    return consumed / (time.perf_counter() - started)


def simulated_ticks(n: int, seed: int = 1) -> list:
    """The first ``n`` ticks the simulator gives for ``seed``, from :data:`START`."""
    return list(itertools.islice(MarketSimulator(SimulatorConfig(seed=seed, start=START)), n))


# --- services ---------------------------------------------------------------------


class BenchServices:
    """The benchmark's own local services (or given ones), and fresh names per figure."""

    def __init__(
        self,
        settings: Settings | None = None,
        cluster: Settings | None = None,
        secure: Settings | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in BENCH_ENVIRONMENT}
        self.settings = settings or load_settings({**env, **BENCH_ENVIRONMENT})
        self.started = False
        self._cluster = cluster
        self.cluster_started = False
        self._secure = secure
        self.secure_started = False
        self._secure_cluster: Settings | None = None
        self.secure_cluster_started = False

    def secure(self, label: str) -> Settings:
        """Fresh names on a broker in secure mode (``up --secure``: SASL_SSL, SCRAM,
        ACLs) beside the services, as the pipeline principal; started on first use."""
        from pipeline_lib import local
        from pipeline_lib.local import secure

        if self._secure is None:
            broker = self.settings.with_overrides(
                home=BENCH_SECURE_HOME,
                kafka_bootstrap_servers="127.0.0.1:39292",
                kafka_controller_port=39293,
                brokers=1,
            )
            running = all(n.running_pid() for n in local.kafka_nodes(broker))
            self._secure = secure.as_principal(broker, secure.PIPELINE)
            self.secure_started = not running  # stopped at the end even if `up` fails
            local.up(
                broker, notify=lambda m: print(m, file=sys.stderr), kafka_only=True, secure=True
            )
        return run_names(self._secure, f"bench-{label}")

    def secure_cluster(self) -> Settings:
        """Three brokers in secure mode beside the services, as the pipeline principal
        (a home of their own, for a class: its record is the home's); started on first
        use, stopped at the end."""
        from pipeline_lib import local
        from pipeline_lib.local import secure

        if self._secure_cluster is None:
            brokers = self.settings.with_overrides(
                home=BENCH_CLASS_HOME,
                kafka_bootstrap_servers="127.0.0.1:39392",
                kafka_controller_port=39393,
                brokers=3,
            )
            running = all(n.running_pid() for n in local.kafka_nodes(brokers))
            self._secure_cluster = secure.as_principal(brokers, secure.PIPELINE)
            self.secure_cluster_started = not running
            local.up(
                brokers, notify=lambda m: print(m, file=sys.stderr), kafka_only=True, secure=True
            )
        return self._secure_cluster

    def cluster(self, label: str) -> Settings:
        """Fresh names on a three-broker cluster beside the services, started on first use."""
        from pipeline_lib import local

        if self._cluster is None:
            self._cluster = self.settings.with_overrides(
                home=BENCH_CLUSTER_HOME,
                kafka_bootstrap_servers="127.0.0.1:39192",
                kafka_controller_port=39193,
                brokers=3,
            )
            running = all(n.running_pid() for n in local.kafka_nodes(self._cluster))
            local.up(self._cluster, notify=lambda m: print(m, file=sys.stderr), kafka_only=True)
            self.cluster_started = not running
        return run_names(self._cluster, f"bench-{label}")

    def __enter__(self) -> BenchServices:
        from pipeline_lib import local

        if not self.settings.is_local:
            return self
        already = all(s.running for s in local.status(self.settings))
        local.up(self.settings, notify=lambda m: print(m, file=sys.stderr))
        self.started = not already
        return self

    def __exit__(self, *exc: object) -> None:
        from pipeline_lib import local

        if self.cluster_started and self._cluster is not None:
            local.down(self._cluster, kafka_only=True)
        if self.secure_started and self._secure is not None:
            local.down(self._secure, kafka_only=True)
        if self.secure_cluster_started and self._secure_cluster is not None:
            local.down(self._secure_cluster, kafka_only=True)
        if self.started:
            local.down(self.settings)

    def fresh(self, label: str, partitions: int = 3) -> Settings:
        """Names of a figure's own (``bench-<label>-<token>-...``) on the services."""
        return run_names(self.settings, f"bench-{label}").with_overrides(partitions=partitions)


_services: BenchServices | None = None


def services() -> BenchServices:
    if _services is None:
        raise RuntimeError("pipeline figures run inside `with using_services():`")
    return _services


class using_services:
    """Start the benchmark services for the figures that need them (or use ``settings``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        cluster: Settings | None = None,
        secure: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.secure = secure

    def __enter__(self) -> BenchServices:
        global _services
        _services = BenchServices(self.settings, self.cluster, self.secure).__enter__()
        return _services

    def __exit__(self, *exc: object) -> None:
        global _services
        if _services is not None:
            _services.__exit__(*exc)
        _services = None


def run_python(args: list[str], settings: Settings) -> subprocess.Popen:
    """``python <args>`` in a process of its own, with ``settings`` as its environment."""
    env = {**os.environ, **settings.to_env()}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def json_result(process: subprocess.Popen, timeout: float = 600) -> dict:
    """The JSON of the last line ``process`` printed (it must end well)."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[1:4]} failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def service_cpu(settings: Settings) -> dict[str, float]:
    """CPU seconds (user + system) each local service process has used so far."""
    from pipeline_lib import local

    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for service in local.status(settings):
        try:
            fields = Path(f"/proc/{service.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[service.name] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError, TypeError):
            cpu[service.name] = float("nan")
    return cpu
