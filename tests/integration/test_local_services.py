"""Lifecycle of the local services: reuse, clean shutdown, clear errors."""

import contextlib
import socket
import time

import pytest

from pipeline_lib import local
from pipeline_lib.local.process import PortInUseError, pid_alive, port_open


def test_second_up_reuses_the_running_services(services):
    before = {s.name: s.pid for s in local.status(services)}
    started = time.monotonic()
    again = local.up(services)
    assert time.monotonic() - started < 10
    assert {s.name: s.pid for s in again} == before
    assert all(s.running for s in again)


def test_down_leaves_no_process_behind(tmp_path, base_settings):
    """A separate GCS emulator and broker on other ports: up, up again, down."""
    settings = base_settings.with_overrides(
        home=tmp_path,
        kafka_bootstrap_servers="127.0.0.1:29192",
        kafka_controller_port=29193,
        storage_emulator_host="http://127.0.0.1:29443",
    )
    services = local.local_services(settings)[:2]  # kafka and gcs
    pids = [s.up().pid for s in services]
    assert all(pid and pid_alive(pid) for pid in pids)
    assert [s.up().pid for s in services] == pids
    for service in services:
        assert service.down() is True
        assert service.down() is False
    assert not any(pid_alive(pid) for pid in pids)
    assert not port_open(29192) and not port_open(29443)
    assert all(not s.status().running for s in services)


@contextlib.contextmanager
def squatted_port():
    """A port on 127.0.0.1 held by a program that is not ours."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def test_taken_port_is_a_clear_error_not_a_hang(tmp_path, base_settings):
    with squatted_port() as port:
        settings = base_settings.with_overrides(
            home=tmp_path, storage_emulator_host=f"http://127.0.0.1:{port}"
        )
        gcs = local.GcsEmulator(settings)
        started = time.monotonic()
        with pytest.raises(PortInUseError, match=rf"127\.0\.0\.1:{port}.*already in use"):
            gcs.up()
        assert time.monotonic() - started < 5
        assert gcs.running_pid() is None


def test_startup_failure_reports_the_log(tmp_path, base_settings):
    """A server that exits at once gives an error with its log, and leaves nothing running."""
    settings = base_settings.with_overrides(
        home=tmp_path, storage_emulator_host="http://127.0.0.1:29444"
    )
    gcs = local.GcsEmulator(settings)
    gcs.command = lambda: ["sh", "-c", "echo boom: cannot start; exit 3"]  # type: ignore[method-assign]
    with pytest.raises(local.ServiceError, match=r"exited with code 3(.|\n)*boom"):
        gcs.up()
    assert gcs.running_pid() is None


def test_a_refused_up_leaves_nothing_running(tmp_path, base_settings):
    """One port taken: `up` fails with a clear error and stops what it had started."""
    with squatted_port() as port:
        settings = base_settings.with_overrides(
            home=tmp_path,
            kafka_bootstrap_servers="127.0.0.1:29292",
            kafka_controller_port=29293,
            storage_emulator_host=f"http://127.0.0.1:{port}",
            bigquery_emulator_host="http://127.0.0.1:29250",
            bigquery_emulator_grpc_port=29260,
        )
        with pytest.raises(PortInUseError, match="already in use"):
            local.up(settings)
        assert not any(s.running for s in local.status(settings))
        assert not port_open(29292) and not port_open(29250)


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path, services):
    """Kafka cluster ids are URL-safe base64, so 1 in 64 starts with "-": formatting
    must not read it as an option (it did: a fresh home failed `up` now and then)."""
    import json

    from pipeline_lib.home.files import KAFKA_LAYOUT_FILE
    from pipeline_lib.local.kafka import KafkaBroker

    settings = services.with_overrides(
        home=tmp_path, kafka_bootstrap_servers="127.0.0.1:29392", kafka_controller_port=29393
    )
    identifier = "-AbCdEfGhIjKlMnOpQrStU"
    (tmp_path / KAFKA_LAYOUT_FILE).write_text(json.dumps({"brokers": 1, "cluster_id": identifier}))
    broker = KafkaBroker(settings)
    broker.data_dir.mkdir(parents=True)  # what up() does before prepare()
    broker.prepare()  # formats the storage with Kafka's own tool; nothing is started
    meta = (broker.data_dir / "meta.properties").read_text()
    assert f"cluster.id={identifier}" in meta.splitlines()
