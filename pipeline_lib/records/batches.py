"""The types the consumer's core, its committer and the sinks share: batches of
records with their message bytes, what a sink wrote, and dead letters.

At the bottom of the package: it imports nothing of it, so the broker-free core
(:mod:`pipeline_lib.kafka_io.batching`) and the sinks depend on it, not on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class PartitionBatch:
    """Consecutive valid records of one partition, with their original message key and
    value bytes (a dead letter for a record a sink refuses keeps both).

    The records are held as columns: ``chunks`` is one pyarrow Table of the record's
    fields per poll, in offset order (the Batcher's unit tests, with no record type,
    hold plain lists instead). ``lines`` holds each record's JSON line, what the GCS
    sink writes: its canonical JSON (the message value itself when it already is
    that), or, for a record with fields of a newer contract, the message as sent.
    """

    topic: str
    partition: int
    first_offset: int
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    chunks: list[Any] = field(default_factory=list)
    record: Callable[..., Any] | None = None  # builds a record from a row's fields
    headers: list[Any] = field(default_factory=list)  # each message's headers, or None
    # Each record's fields of a newer contract (a dict, or None); empty: none at all.
    extras: list[dict[str, Any] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def keep_extras(self, extras: list[dict[str, Any] | None], before: int) -> None:
        """Note the extras of records appended after the first ``before`` records."""
        if self.extras or any(e is not None for e in extras):
            self.extras.extend([None] * (before - len(self.extras)))
            self.extras.extend(extras)

    @property
    def table(self) -> Any:
        """The records' columns as one pyarrow Table (chunks joined, not copied)."""
        import pyarrow as pa

        if len(self.chunks) == 1:
            return self.chunks[0]
        return pa.concat_tables(self.chunks)

    @property
    def records(self) -> list[Any]:
        """The records as objects: built row by row, for the rare paths that need
        them (a sink isolating refused rows) and for tests."""
        out: list[Any] = []
        for chunk in self.chunks:
            if isinstance(chunk, list):
                out.extend(chunk)
            else:
                make = self.record or dict
                out.extend(make(**row) for row in chunk.to_pylist())
        return out

    def take(self, indices: list[int]) -> PartitionBatch:
        """The records at ``indices`` (ascending) as a batch of their own."""
        return PartitionBatch(
            self.topic,
            self.partition,
            self.offsets[indices[0]],
            [self.offsets[i] for i in indices],
            [self.keys[i] for i in indices],
            [self.values[i] for i in indices],
            [self.lines[i] for i in indices],
            [self.table.take(indices)],
            self.record,
            [self.headers[i] for i in indices],
            [self.extras[i] for i in indices] if self.extras else [],
        )

    def letter(self, index: int, reason: str, stage: str) -> DeadLetter:
        """The dead letter for the record at ``index``, refused by ``stage`` (a sink):
        its original key, value and headers, like a message that failed to decode."""
        return DeadLetter(
            self.topic,
            self.partition,
            self.offsets[index],
            self.keys[index],
            self.values[index],
            reason,
            stage=stage,
            headers=tuple(self.headers[index] or ()),
        )


@dataclass
class Batch:
    """One micro-batch: a part per partition, closed at ``closed_at`` (UTC), read by
    consumer group ``group`` in its generation ``generation`` (-1: no group), which
    the GCS sink stores with each object to tell a late writer from a later one."""

    parts: list[PartitionBatch]
    closed_at: datetime
    group: str = ""
    generation: int = -1

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


@dataclass
class DeadLetter:
    """A message the pipeline could not accept, kept with its original key, value and
    headers.

    Made when decoding fails (``stage="decode"``) or a sink refuses a record (the
    sink's name), sent to the dead-letter topic with the rest in headers, and read
    back from it (then ``dlq_offset`` is its offset there, and ``truncated`` /
    ``original_value_bytes`` say whether it was cut to fit).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    field: str | None = None
    stage: str = "decode"
    dlq_offset: int | None = None
    truncated: str = ""
    original_value_bytes: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()  # the original message's headers


@dataclass
class WriteResult:
    """What a sink wrote for one batch."""

    sink: str
    rows: int
    locations: list[str] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)  # refused by the sink
