"""What the Kafka cluster looks like right now: brokers, the controller quorum, and for
each partition its leader, replicas, in-sync replicas and message count.

``status``, the consumer notebook and the fault-tolerance notebook read it; the
tests use it to find whom to kill (the leader of a partition, the group coordinator).
All of it comes from Kafka's own admin API (Metadata, DescribeQuorum, ListOffsets),
so it describes a real cluster just as well as the local one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError

OFFSETS_TOPIC = "__consumer_offsets"


class ClusterError(PipelineError):
    """The cluster could not be described, or did not reach the state waited for."""


@dataclass(frozen=True)
class BrokerState:
    """One broker: its id, address, and whether it answers (locally: its process runs)."""

    broker_id: int
    endpoint: str
    up: bool


@dataclass(frozen=True)
class PartitionState:
    """One partition as the controller sees it."""

    topic: str
    partition: int
    leader: int  # -1: no leader, the partition is offline
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    messages: int | None = None

    @property
    def under_replicated(self) -> bool:
        """Fewer copies in sync than assigned: a broker is down or catching up."""
        return len(self.isr) < len(self.replicas)

    @property
    def offline(self) -> bool:
        return self.leader < 0


@dataclass(frozen=True)
class ClusterState:
    """A snapshot of the cluster and of the partitions of some topics."""

    brokers: list[BrokerState]
    quorum_leader: int | None
    partitions: list[PartitionState] = field(default_factory=list)

    def partition(self, topic: str, partition: int) -> PartitionState:
        for state in self.partitions:
            if (state.topic, state.partition) == (topic, partition):
                return state
        raise ClusterError(f"partition {topic}-{partition} is not in this snapshot")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived flags spelled out."""
        return {
            "brokers": [asdict(b) for b in self.brokers],
            "quorum_leader": self.quorum_leader,
            "partitions": [
                {
                    **asdict(p),
                    "replicas": list(p.replicas),
                    "isr": list(p.isr),
                    "under_replicated": p.under_replicated,
                    "offline": p.offline,
                }
                for p in self.partitions
            ],
        }

    def partition_table(self) -> Any:
        """Partitions as a DataFrame, one row each (for notebooks)."""
        import pandas as pd

        rows = [
            {
                "partition": f"{p.topic}-{p.partition}",
                "leader": p.leader if p.leader >= 0 else "none",
                "replicas": list(p.replicas),
                "in_sync": list(p.isr),
                "under_replicated": p.under_replicated,
                "messages": p.messages,
            }
            for p in self.partitions
        ]
        return pd.DataFrame(rows).set_index("partition")


def describe_cluster(
    settings: Settings, topics: list[str] | None = None, timeout_s: float = 5.0
) -> ClusterState:
    """Brokers, quorum leader and partitions of ``topics`` (default: the pipeline's)."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec
    from kafka.errors import KafkaError

    from pipeline_lib.clients.kafka import kafka_admin

    topics = topics if topics is not None else [settings.topic, settings.dead_letter_topic]
    admin = kafka_admin(settings, timeout_s=timeout_s)
    try:
        registered = {b["broker_id"]: b for b in admin.describe_cluster()["brokers"]}
        brokers = _brokers(settings, registered)
        try:
            quorum = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]
            quorum_leader: int | None = quorum["leader_id"]
        except (KafkaError, KeyError, IndexError):
            quorum_leader = None
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t in existing]
        partitions = []
        for topic in admin.describe_topics(wanted) if wanted else []:
            for p in topic["partitions"]:
                partitions.append(
                    PartitionState(
                        topic=topic["name"],
                        partition=p["partition_index"],
                        leader=p["leader_id"],
                        replicas=tuple(p["replica_nodes"]),
                        isr=tuple(p["isr_nodes"]),
                    )
                )
        partitions.sort(key=lambda p: (p.topic, p.partition))
        online = [p for p in partitions if not p.offline]
        if online:
            specs = [TopicPartition(p.topic, p.partition) for p in online]
            try:
                latest = admin.list_partition_offsets(dict.fromkeys(specs, OffsetSpec.LATEST))
                earliest = admin.list_partition_offsets(dict.fromkeys(specs, OffsetSpec.EARLIEST))
                counts = {
                    (tp.topic, tp.partition): latest[tp].offset - earliest[tp].offset
                    for tp in specs
                }
                partitions = [
                    _with(p, messages=counts.get((p.topic, p.partition))) for p in partitions
                ]
            except KafkaError:
                pass  # a leader moving right now: counts are left out of this snapshot
        return ClusterState(brokers, quorum_leader, partitions)
    except KafkaError as error:
        raise ClusterError(f"Could not describe the Kafka cluster: {error}") from error
    finally:
        admin.close()


def _with(state: PartitionState, **changes: Any) -> PartitionState:
    return PartitionState(**{**asdict(state), **changes})


def _brokers(settings: Settings, registered: dict[int, dict]) -> list[BrokerState]:
    """Local brokers by their process; remote ones by the cluster's own registry."""
    if settings.is_local:
        from pipeline_lib.local import kafka_nodes

        return [
            BrokerState(node.node_id, node.endpoint, node.running_pid() is not None)
            for node in kafka_nodes(settings)
        ]
    return [
        BrokerState(b_id, f"{b['host']}:{b['port']}", not b.get("is_fenced", False))
        for b_id, b in sorted(registered.items())
    ]


def partition_for_key(key: str, partitions: int) -> int:
    """The partition a keyed record goes to: murmur2 of the key bytes, sign bit dropped,
    modulo the partition count (kafka-python's default partitioner, the same as Java's)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def key_partitions(symbols: list[str] | None, partitions: int) -> Any:
    """Symbol → partition for the producer's keys (None: the simulator's default
    symbols), as a DataFrame, one row per symbol."""
    import pandas as pd

    if not symbols:
        from pipeline_lib.sources.simulator import DEFAULT_SYMBOLS

        symbols = [spec.symbol for spec in DEFAULT_SYMBOLS]

    rows = [{"symbol": s, "partition": partition_for_key(s, partitions)} for s in symbols]
    return pd.DataFrame(rows).sort_values(["partition", "symbol"]).reset_index(drop=True)


def coordinator_partition(group: str, offsets_partitions: int) -> int:
    """The ``__consumer_offsets`` partition that stores ``group``'s commits: Kafka takes
    the absolute value of Java's ``String.hashCode`` of the group id, modulo the count."""
    data, code = group.encode("utf-16-be"), 0
    for i in range(0, len(data), 2):
        code = (31 * code + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    signed = code - (1 << 32) if code >= 1 << 31 else code
    return (0 if signed == -(1 << 31) else abs(signed)) % offsets_partitions


def group_coordinator(settings: Settings, group: str | None = None) -> int:
    """Broker id coordinating ``group``: the leader of its ``__consumer_offsets`` partition."""
    group = group or settings.consumer_group
    state = describe_cluster(settings, [OFFSETS_TOPIC])
    offsets = [p for p in state.partitions if p.topic == OFFSETS_TOPIC]
    if not offsets:
        raise ClusterError(
            f"{OFFSETS_TOPIC} does not exist yet: it is created when the first consumer "
            "group commits"
        )
    return state.partition(OFFSETS_TOPIC, coordinator_partition(group, len(offsets))).leader


def wait_for(
    settings: Settings,
    condition: Any,
    what: str,
    timeout_s: float = 60.0,
    topics: list[str] | None = None,
) -> ClusterState:
    """Poll :func:`describe_cluster` until ``condition(state)`` holds; the last state."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            state = describe_cluster(settings, topics)
            if condition(state):
                return state
        except PipelineError as error:  # a broker restarting: try again
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ClusterError(f"Kafka did not reach '{what}' within {timeout_s:.0f}s{detail}")
        time.sleep(0.5)


def fully_replicated(state: ClusterState) -> bool:
    """Every partition has a leader and all its replicas in sync."""
    return bool(state.partitions) and all(
        not p.offline and not p.under_replicated for p in state.partitions
    )
