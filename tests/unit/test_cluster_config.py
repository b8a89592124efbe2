"""A local Kafka cluster as configuration: sizes, ports, properties, layout, partitioning.

Nothing here starts a broker; the integration tier runs the real three-node cluster.
"""

import json

import pytest
from kafka.partitioner.default import murmur2

from pipeline_lib import cli, local
from pipeline_lib.cli.status import format_cluster
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.home import load_settings
from pipeline_lib.local.kafka import broker_properties, check_layout, cluster_id
from pipeline_lib.local.process import ServiceError
from pipeline_lib.ops.cluster import (
    BrokerState,
    ClusterState,
    PartitionState,
    coordinator_partition,
    fully_replicated,
)
from pipeline_lib.sources.simulator import DEFAULT_SYMBOLS


def _settings(tmp_path, **extra):
    env = {
        "PIPELINE_HOME": str(tmp_path / "home"),
        "PIPELINE_CACHE": str(tmp_path / "cache"),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "KAFKA_CONTROLLER_PORT": "29093",
        **extra,
    }
    return load_settings(env)  # what `up` recorded in the home counts


def _props(settings, node):
    text = broker_properties(settings, settings.home / f"n{node}", node)
    return dict(line.split("=", 1) for line in text.splitlines())


def test_three_brokers_get_their_own_ports_and_every_client_knows_all_of_them(tmp_path):
    settings = _settings(tmp_path, PIPELINE_BROKERS="3")
    assert settings.broker_ports == [29092, 29094, 29096]
    assert settings.controller_ports == [29093, 29095, 29097]
    assert settings.kafka_bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    # The expanded list survives a round trip through the environment of a child process.
    again = Settings.from_env(settings.to_env())
    assert again.kafka_bootstrap_servers == settings.kafka_bootstrap_servers
    assert again.brokers == 3


def test_three_node_properties_replicate_everything(tmp_path):
    settings = _settings(tmp_path, PIPELINE_BROKERS="3")
    nodes = [_props(settings, n) for n in (1, 2, 3)]
    voters = "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    assert all(p["controller.quorum.voters"] == voters for p in nodes)
    assert [p["node.id"] for p in nodes] == ["1", "2", "3"]
    assert nodes[1]["listeners"] == "PLAINTEXT://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095"
    for props in nodes:
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
    assert len({p["log.dirs"] for p in nodes}) == 3


def test_one_broker_keeps_replication_one(tmp_path):
    props = _props(_settings(tmp_path), 1)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"


@pytest.mark.parametrize(
    ("brokers", "message"),
    [
        ("0", "at least 1 broker"),
        ("-3", "at least 1 broker"),
        ("2", "Use 3, the smallest cluster"),
        ("9", "more brokers than one machine should run"),
        ("three", "not a whole number"),
    ],
)
def test_cluster_sizes_that_make_no_sense_are_refused(tmp_path, brokers, message):
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, PIPELINE_BROKERS=brokers)


def test_colliding_ports_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="collide"):
        _settings(tmp_path, PIPELINE_BROKERS="3", KAFKA_CONTROLLER_PORT="29094")


def test_services_list_each_broker_then_the_emulators(tmp_path):
    services = local.local_services(_settings(tmp_path, PIPELINE_BROKERS="3"))
    assert [s.name for s in services] == ["kafka-1", "kafka-2", "kafka-3", "gcs", "bigquery"]
    assert len({s.folder for s in services}) == 5


def test_the_recorded_cluster_size_is_what_later_commands_use(tmp_path):
    three = _settings(tmp_path, PIPELINE_BROKERS="3")
    identifier = cluster_id(three)
    assert cluster_id(three) == identifier  # one id for every node, stable
    assert _settings(tmp_path).brokers == 3  # PIPELINE_BROKERS unset: what `up` made
    assert _settings(tmp_path).kafka_bootstrap_servers.count(",") == 2


def test_a_cluster_of_another_size_on_the_same_home_is_refused(tmp_path):
    three = _settings(tmp_path, PIPELINE_BROKERS="3")
    cluster_id(three)
    check_layout(three)
    with pytest.raises(ServiceError, match=r"holds a 3-broker local Kafka.*down --purge"):
        check_layout(_settings(tmp_path, PIPELINE_BROKERS="1"))


def test_a_home_from_before_the_layout_file_counts_as_one_broker(tmp_path):
    one = _settings(tmp_path)
    data = one.home / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("node.id=1\n")
    check_layout(one)
    with pytest.raises(ServiceError, match="holds a 1-broker"):
        check_layout(_settings(tmp_path, PIPELINE_BROKERS="3"))


@pytest.mark.parametrize(
    "argv",
    [["broker", "stop", "3"], ["broker", "start", "0"], ["up", "--brokers", "2"]],
)
def test_bad_broker_commands_fail_in_one_line_and_change_nothing(
    tmp_path, monkeypatch, capsys, argv
):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    monkeypatch.delenv("PIPELINE_BROKERS", raising=False)
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert not (tmp_path / "home").exists()


def test_stopping_a_broker_that_is_not_running_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    monkeypatch.setenv("PIPELINE_BROKERS", "3")
    assert cli.main(["broker", "stop", "2", "--kill"]) == 2
    assert "broker 2 is not running" in capsys.readouterr().err


def test_broker_commands_are_local_only():
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9092"})
    with pytest.raises(ServiceError, match="local brokers only"):
        local.stop_broker(settings, 1)


def test_default_symbols_load_every_partition():
    """Keys map to partitions by murmur2 (kafka-python's default partitioner, the same as
    Java's): with the default universe every partition of 3 or 6 gets a real share."""
    for partitions in (3, 6):
        counts = [0] * partitions
        for spec in DEFAULT_SYMBOLS:
            counts[(murmur2(spec.symbol.encode()) & 0x7FFFFFFF) % partitions] += 1
        assert min(counts) >= len(DEFAULT_SYMBOLS) // partitions - 1 >= 1, counts
        assert max(counts) <= len(DEFAULT_SYMBOLS) // partitions + 1, counts


@pytest.mark.parametrize(
    ("group", "partitions", "expected"),
    # Checked against a real Kafka 4.1 cluster's FindCoordinator answers (10 partitions).
    [("stock-pipeline-sink", 10, 5), ("grp-x", 10, 4), ("a", 10, 7), ("ßü-1", 10, 9)],
)
def test_group_coordinator_partition_follows_javas_string_hash(group, partitions, expected):
    assert coordinator_partition(group, partitions) == expected


def test_cluster_state_flags_and_json():
    state = ClusterState(
        brokers=[BrokerState(1, "a:1", True), BrokerState(2, "a:2", False)],
        quorum_leader=1,
        partitions=[
            PartitionState("t", 0, 1, (1, 2, 3), (1, 3), 10),
            PartitionState("t", 1, -1, (2,), (), None),
        ],
    )
    document = json.loads(json.dumps(state.to_dict()))
    assert [p["under_replicated"] for p in document["partitions"]] == [True, True]
    assert [p["offline"] for p in document["partitions"]] == [False, True]
    assert not fully_replicated(state)
    lines = format_cluster(document)
    assert "2 DOWN" in lines[0]
    assert "UNDER-REPLICATED" in lines[2] and "OFFLINE" in lines[3]
    table = state.partition_table()
    assert list(table["leader"]) == [1, "none"]
    assert list(table.index) == ["t-0", "t-1"]
