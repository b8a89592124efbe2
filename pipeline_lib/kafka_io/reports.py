"""What a consumer run and each of its batches did: the reports a student reads.

Every message read ends in exactly one of landed, dead letter or discarded (read
again by whoever owns the partition next), and the reports say so in those words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline_lib.kafka_io.batching import Counts
from pipeline_lib.records.batches import WriteResult


def partition_lag(end: int, start: int, committed: int | None) -> int:
    """Messages of a partition its group has yet to read: the log end minus the
    committed offset (the log start when nothing is committed, or when retention
    deleted what the commit points at). The one formula for status, notebooks and
    the consumer."""
    position = start if committed is None else max(committed, start)
    return max(0, end - position)


@dataclass
class BatchReport:
    """What one committed batch did, passed to ``on_batch`` callbacks.

    ``records`` is the number of messages the commit covers (landed records plus dead
    letters), ``committed`` the offsets committed per partition, ``seconds`` the time
    spent writing and committing, ``age`` how long the batch's oldest record had
    waited when the batch closed.
    """

    number: int
    records: int
    dead_letters: int
    results: list[WriteResult]
    committed: dict[int, int]
    seconds: float
    age: float


@dataclass
class ConsumeReport:
    """What a consumer run did.

    Every message read ends in exactly one of ``written`` (landed in the sinks and
    committed), ``dead_letters`` (on the dead-letter topic, committed) or
    ``discarded`` (dropped uncommitted after a rebalance, a refused commit or an
    error: whoever reads the partition next reads it again), so
    ``consumed == written + dead_letters + discarded``.
    """

    topic: str
    group: str
    counts: Counts = field(default_factory=Counts)  # the consumer core's, live
    reconnects: int = 0  # stalled Kafka consumers replaced
    seconds: float = 0.0
    locations: list[str] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    stopped_because: str = ""
    lag: int | None = None
    active_seconds: float = 0.0  # first record received → last commit
    # CPU of this process (every thread) from the poll that returned the first records
    # to the end of the run: what the records cost, without start-up (imports, client
    # set-up, creating the tables).
    active_cpu_seconds: float = 0.0
    # Where the time went: poll and decode on the consumer thread, each sink on the
    # writer threads (overlapping the next poll), dead letters and commits back on
    # the consumer thread.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # What the group told this member, in order: ("assigned" | "revoked" | "lost",
    # partitions). The first "assigned" is the join; later ones are rebalances.
    assignments: list[tuple[str, list[int]]] = field(default_factory=list)

    @property
    def consumed(self) -> int:
        return self.counts.read

    @property
    def written(self) -> int:
        return self.counts.landed

    @property
    def dead_letters(self) -> int:
        return self.counts.dead_letters

    @property
    def discarded(self) -> int:
        return self.counts.discarded

    @property
    def batches(self) -> int:
        return self.counts.batches

    @property
    def rebalances(self) -> int:
        return self.counts.rebalances

    @property
    def refused_commits(self) -> int:
        return self.counts.refused_commits

    @property
    def fenced(self) -> int:
        return self.counts.fenced

    @property
    def rate(self) -> float:
        return self.consumed / self.seconds if self.seconds else 0.0

    @property
    def active_rate(self) -> float:
        """Records per second while there was work (excludes group join and idle time)."""
        return self.consumed / self.active_seconds if self.active_seconds else 0.0

    def add_time(self, stage: str, seconds: float) -> None:
        """Count ``seconds`` spent in ``stage`` (poll, decode, sink:<name>, commit...)."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "consumed": self.consumed,
            "written": self.written,
            "dead_letters": self.dead_letters,
            "discarded": self.discarded,
            "batches": self.batches,
            "rebalances": self.rebalances,
            "refused_commits": self.refused_commits,
            "fenced": self.fenced,
            "reconnects": self.reconnects,
            "seconds": round(self.seconds, 3),
            "active_seconds": round(self.active_seconds, 3),
            "active_cpu_seconds": round(self.active_cpu_seconds, 3),
            "objects": [x for x in self.locations if x.startswith("gs://")],
            "committed": {str(p): o for p, o in sorted(self.committed.items())},
            "stopped_because": self.stopped_because,
            "lag": self.lag,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "newer_contract": self.counts.newer,
            "unknown_fields": dict(self.counts.unknown_fields),
        }

    def _newer_lines(self) -> list[str]:
        """A line on records of a newer contract, when there were any."""
        if not self.counts.newer:
            return []
        fields = ", ".join(
            f"{name[:40]!r} ×{count:,}"
            for name, count in sorted(self.counts.unknown_fields.items(), key=lambda x: -x[1])[:8]
        )
        return [
            f"  {self.counts.newer:,} records carried fields this consumer's contract does "
            f"not know ({fields}): kept with the record (GCS verbatim; BigQuery as "
            "PIPELINE_SCHEMA_UPDATES says), never a dead letter for that alone"
        ]

    def summary(self) -> str:
        objects = [x for x in self.locations if x.startswith("gs://")]
        tables = sorted({x for x in self.locations if x.startswith("bq://")})
        lines = [
            f"consumed {self.consumed:,} records from {self.topic!r} (group {self.group!r}) in "
            f"{self.seconds:.1f}s ({self.rate:,.0f}/s); stopped: {self.stopped_because}",
            f"  landed {self.written:,} records in {self.batches} batches; "
            f"{self.dead_letters:,} to the dead-letter topic; {self.discarded:,} left "
            f"uncommitted (read again later); {self.rebalances} assignments from the group "
            "(the first is the join); "
            f"lag now: {'unknown' if self.lag is None else f'{self.lag:,}'}"
            + (
                f"; {self.fenced} times what was held was dropped uncommitted (the group "
                "had moved on, or the membership was unconfirmed)"
                if self.fenced
                else ""
            ),
            *self._newer_lines(),
            f"  GCS: {len(objects)} objects" + (f", last {objects[-1]}" if objects else ""),
            f"  BigQuery: {', '.join(t[5:] for t in tables) or '-'}",
            f"  committed offsets: {dict(sorted(self.committed.items()))}",
        ]
        return "\n".join(lines)
