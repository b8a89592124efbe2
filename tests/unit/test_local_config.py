"""Local service definitions: properties, commands and status, without starting anything."""

import json

from pipeline_lib import cli, local
from pipeline_lib.core.config import Settings
from pipeline_lib.local.kafka import broker_properties


def _settings(tmp_path):
    return Settings.from_env(
        {
            "PIPELINE_HOME": str(tmp_path / "home"),
            "PIPELINE_CACHE": str(tmp_path / "cache"),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
            "KAFKA_CONTROLLER_PORT": "29093",
        }
    )


def test_broker_properties_are_single_node_kraft_on_loopback(tmp_path):
    props = dict(
        line.split("=", 1) for line in broker_properties(_settings(tmp_path), tmp_path).splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == str(tmp_path)
    assert "zookeeper.connect" not in props


def test_services_have_their_own_folders_and_ports(tmp_path):
    settings = _settings(tmp_path)
    services = local.local_services(settings)
    assert [s.name for s in services] == ["kafka", "gcs", "bigquery"]
    assert services[0].ports == {"broker": 29092, "controller": 29093}
    assert services[1].ports == {"http": 4443}
    assert services[2].ports == {"rest": 9050, "grpc": 9060}
    assert len({s.folder for s in services}) == 3
    assert services[0].libs_dir.parent == tmp_path / "cache"
    gcs_command = services[1].command()
    assert gcs_command[gcs_command.index("-host") + 1] == "127.0.0.1"


def test_cloud_target_has_no_local_services():
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092"})
    assert local.local_services(settings) == []


def test_status_json_when_nothing_runs(tmp_path, monkeypatch, capsys):
    for key, value in {
        "PIPELINE_HOME": str(tmp_path / "home"),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "ALPHAVANTAGE_API_KEY": "SECRETKEY",
    }.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kafka_bootstrap_servers"] == "127.0.0.1:29092"
    assert document["gcs_endpoint"] == "http://127.0.0.1:4443"
    assert document["settings"]["topic"] == "stock-ticks"
    assert {s["name"]: s["running"] for s in document["services"]} == {
        "kafka": False,
        "gcs": False,
        "bigquery": False,
    }
    assert "SECRETKEY" not in json.dumps(document)


def test_stale_state_file_is_not_a_running_service(tmp_path):
    service = local.local_services(_settings(tmp_path))[1]
    service.folder.mkdir(parents=True)
    service.state_path.write_text(json.dumps({"pid": 999_999_999, "ports": {}}))
    assert service.running_pid() is None
    assert not service.state_path.exists()


def test_the_bigquery_emulator_makes_no_table_copy_per_write(monkeypatch, tmp_path):
    """bqemulator copies the whole table after each write (time travel); ours must
    still announce the change (query cache, materialized views) but copy nothing."""
    from datetime import UTC, datetime

    from bqemulator.domain.events import TableDataChanged
    from bqemulator.versioning.snapshots import SnapshotManager

    from pipeline_lib.local.bigquery import BigQueryEmulator, without_table_copies

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[object] = []

        def execute(self, sql, parameters=None):
            self.calls.append(sql)

        def publish(self, event):
            self.calls.append(event)

        def get_table(self, *names):
            return object()  # the table exists: the original would copy it

        def create_snapshot(self, meta):
            self.calls.append(meta)

    class Clock:
        def now(self):
            return datetime.now(UTC)

    engine, events = Recorder(), Recorder()

    def record_change() -> None:
        manager = SnapshotManager(engine, engine, Clock(), events, retention_days=0)
        manager.record_change("p", "d", "t")

    # The emulator's own behaviour, so this test notices if a new version drops it.
    record_change()
    assert any("CREATE TABLE" in str(c) for c in engine.calls)

    engine.calls.clear()
    events.calls.clear()
    monkeypatch.setattr(SnapshotManager, "record_change", SnapshotManager.record_change)
    without_table_copies()
    record_change()
    assert engine.calls == []
    assert events.calls == [TableDataChanged("p", "d", "t")]

    emulator = BigQueryEmulator(_settings(tmp_path))
    assert "from pipeline_lib.local.bigquery import serve; serve()" in emulator.command()
    environment = emulator.environment()
    assert environment["BQEMU_TIME_TRAVEL_RETENTION_DAYS"] == "0"


def test_a_probe_that_meets_itself_finds_nothing_listening(monkeypatch):
    """A free port in the ephemeral range can be 'opened' by the probe's own socket
    (a TCP self-connect); that must not read as a service, nor as a port taken."""
    from pipeline_lib.local import process

    class SelfConnected:
        def __init__(self, *args):
            self.bound = None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def settimeout(self, timeout):
            pass

        def bind(self, address):
            self.bound = address

        def connect_ex(self, address):
            self.peer = address
            return 0

        def getsockname(self):
            return self.peer  # the kernel chose the destination port as the source

        def getpeername(self):
            return self.peer

    monkeypatch.setattr(process.socket, "socket", SelfConnected)
    assert process.port_open(39292) is False
