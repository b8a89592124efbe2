"""The consumer's broker-free core: buffers, micro-batches, the commit plan, positions.

:class:`Batcher` knows nothing of Kafka clients, sinks or threads; the consumer loop
(:mod:`pipeline_lib.kafka_io.consumer`) feeds it polled messages and asks it what to write,
what to commit and where to seek. That keeps every rule that protects data in one
place that unit tests drive with plain objects:

* **Contiguity.** Per partition the core holds a run of consecutive messages that
  starts at the last commit: the sealed batches being written (at most
  ``max_inflight``, committed strictly in the order they were sealed) and the open
  buffer. A batch's commit offset is the offset after its last message, so a commit
  never moves past a message that is not in the sinks or the dead-letter topic.
* **Positions across rebalances.** After any change of assignment the loop seeks
  every partition it owns to :meth:`Batcher.rebalance`'s answer: the offset after
  what the core still holds for that partition, or ``None`` = the committed offset
  (the core dropped what it held). So the client's own idea of a position, which
  differs between clients and protocols, never decides what is skipped.
* **Poison pills.** Whatever a message holds, decoding ends in a record or a dead
  letter: every exception of the decoder is caught here.
* **Counting.** Every message read ends in exactly one of: landed, dead letter,
  discarded (dropped uncommitted, so it is read again by whoever owns the partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from pipeline_lib.records.batches import Batch, DeadLetter, PartitionBatch
from pipeline_lib.records.schema import InvalidRecord

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 1000


class Message(Protocol):
    """What the core needs of a consumed message (kafka-python's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # headers: list of (name, bytes), read where present (kafka-python's records)


class Columns(Protocol):
    """What the core needs to hold a stream's records as columns (a Stream fits)."""

    record: Callable[..., Any]
    # A whole poll: (columns, lines, each record's unknown fields or None) or None.
    decode_many: Callable[[list[bytes | None]], tuple[Any, list[bytes], Any] | None] | None

    def encode(self, record: Any) -> bytes: ...

    def to_table(self, records: list[Any]) -> Any: ...


class _PartitionBuffer:
    """Consecutive messages of one partition read since the last seal."""

    __slots__ = ("dead", "first_offset", "next_offset", "opened", "part")

    def __init__(self, topic: str, partition: int, offset: int, opened: float) -> None:
        self.part = PartitionBatch(topic, partition, offset)
        self.dead: list[DeadLetter] = []
        self.first_offset = offset
        self.next_offset = offset
        self.opened = opened

    @property
    def messages(self) -> int:
        return self.next_offset - self.first_offset


@dataclass
class SealedBatch:
    """A closed micro-batch: what the sinks write and what is committed after."""

    number: int
    batch: Batch
    dead_letters: list[DeadLetter]
    offsets: dict[int, int]  # partition -> offset to commit (after its last message)
    first_offsets: dict[int, int]
    messages: int  # messages covered by the commit: records + dead letters
    age: float  # how long the oldest message waited before the seal
    sealed_at: float
    committable: bool = True  # False once the group membership it was read under is lost
    # The sinks' writes of this batch (futures, one per sink), set by whoever writes
    # it; None until then (a batch sealed but not yet handed to the writers).
    writes: list[Any] | None = None

    @property
    def generation(self) -> int:
        return self.batch.generation

    @property
    def records(self) -> int:
        return len(self.batch)

    def covered(self, offsets: dict[int, int]) -> int:
        """Messages a commit of ``offsets`` (some of this batch's partitions) moves past."""
        return sum(self.offsets[p] - self.first_offsets[p] for p in offsets)

    def dead_letters_in(self, offsets: dict[int, int], refused: int = 0) -> int:
        """Dead letters a commit of ``offsets`` accounts for: those of decoding in its
        partitions, plus ``refused`` records the sinks refused there."""
        return sum(1 for d in self.dead_letters if d.partition in offsets) + refused


@dataclass
class Counts:
    """Every message read ends in exactly one of landed / dead_letters / discarded."""

    read: int = 0
    landed: int = 0
    dead_letters: int = 0
    discarded: int = 0
    duplicates_skipped: int = 0
    gaps: int = 0
    rebalances: int = 0
    refused_commits: int = 0
    fenced: int = 0  # times all held was dropped: the membership it was read in moved on
    batches: int = 0
    newer: int = 0  # records read with fields of a newer contract (kept, not refused)
    unknown_fields: dict[str, int] = field(default_factory=dict)  # those fields, counted


@dataclass
class Batcher:
    """Buffers, seals and tracks commits for one consumer of one topic."""

    topic: str
    batch_size: int = 10_000
    flush_interval: float = 1.0
    decode: Callable[[bytes | None], Any] = field(default=lambda value: value)
    # The tolerant reader (a Stream's read): the record and its unknown fields.
    read: Callable[[bytes | None], tuple[Any, dict[str, Any] | None]] | None = None
    # Why a message's headers say it cannot be read (another contract), or None.
    refuse: Callable[[Any], str | None] | None = None
    clock: Callable[[], float] = time.monotonic
    counts: Counts = field(default_factory=Counts)
    max_inflight: int = 1  # sealed batches written at once (committed in order)
    group: str = ""  # the consumer group reading: stamped on each batch (GCS objects)
    # How records become columns (a Stream): None keeps them as lists (unit tests).
    columns: Columns | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or not self.flush_interval > 0:
            raise ValueError("batch_size must be >= 1 and flush_interval > 0")
        self._buffers: dict[int, _PartitionBuffer] = {}
        self._buffered = 0  # valid records in the open buffers
        self._sealed = 0
        self.inflight: list[SealedBatch] = []  # oldest first
        # Dropped uncommitted while their writes may still run; the writer waits for
        # them before writing the same records again, then clears the list.
        self.dropped: list[SealedBatch] = []
        self.committed: dict[int, int] = {}

    # --- reading ------------------------------------------------------------------

    def next_offset(self, partition: int) -> int | None:
        """The offset after the last message held for ``partition`` (None: nothing held)."""
        buffer = self._buffers.get(partition)
        if buffer is not None:
            return buffer.next_offset
        for sealed in reversed(self.inflight):
            if partition in sealed.offsets:
                return sealed.offsets[partition]
        return None

    def add(self, partition: int, messages: Iterable[Message]) -> int:
        """Buffer polled messages of one partition; returns how many were new."""
        return self.add_poll({partition: messages})

    def add_poll(self, polled: Mapping[int, Iterable[Message]]) -> int:
        """Buffer a poll's messages (partition -> messages); returns how many were new.

        A message before the expected offset was already read (the client re-fetched
        it) and is skipped; one after it means the log has a gap (compaction,
        retention, transaction markers), which is logged and spanned by the commit.
        The poll is decoded at once when the stream's columnar decoder takes it all,
        else message by message (each bad message a dead letter with its reason).
        """
        fresh: dict[int, list[Message]] = {}
        for partition, messages in polled.items():
            taken = self._fresh(partition, messages)
            if taken:
                fresh[partition] = taken
        if not fresh:
            return 0
        decoded = self._decode_poll([m for taken in fresh.values() for m in taken])
        start = 0
        for partition, taken in fresh.items():
            buffer = self._buffers.get(partition)
            if buffer is None:
                buffer = _PartitionBuffer(self.topic, partition, taken[0].offset, self.clock())
                buffer.part.record = self.columns.record if self.columns else None
                self._buffers[partition] = buffer
            if decoded is None:
                self._take(buffer, taken)
            else:
                table, lines, extras = decoded
                kept = extras[start : start + len(taken)] if extras else [None] * len(taken)
                for extra in kept:
                    if extra is not None:
                        self._count_unknown(extra)
                buffer.part.keep_extras(kept, len(buffer.part))
                self._keep(buffer.part, taken, lines[start : start + len(taken)])
                buffer.part.chunks.append(table.slice(start, len(taken)))
                self._buffered += len(taken)
                start += len(taken)
            buffer.next_offset = taken[-1].offset + 1
            self.counts.read += len(taken)
        return sum(len(taken) for taken in fresh.values())

    def _fresh(self, partition: int, messages: Iterable[Message]) -> list[Message]:
        """The messages that follow what is held for ``partition`` (see add_poll)."""
        expected = self.next_offset(partition)
        fresh: list[Message] = []
        for message in messages:
            offset = message.offset
            if expected is not None and offset < expected:
                self.counts.duplicates_skipped += 1
                continue
            if expected is not None and offset > expected:
                self.counts.gaps += 1
                log.warning(
                    "partition %d: offset %d follows %d (gap in the log)",
                    partition,
                    offset,
                    expected - 1,
                )
            fresh.append(message)
            expected = offset + 1
        return fresh

    def _decode_poll(self, messages: list[Message]) -> tuple[Any, list[bytes], Any] | None:
        """The stream's columnar decoder over the whole poll, or None (one by one):
        also when a message is stamped with a contract this consumer cannot read."""
        columns = self.columns
        if columns is None or columns.decode_many is None:
            return None
        if self.refuse is not None:
            stamped = {tuple(h) for m in messages if (h := getattr(m, "headers", None))}
            if any(self.refuse(headers) for headers in stamped):
                return None
        try:
            return columns.decode_many([m.value for m in messages])
        except Exception:  # never trusted to be total: the one-by-one path decides
            log.exception("the columnar decoder failed; decoding one by one")
            return None

    @staticmethod
    def _keep(part: PartitionBatch, messages: list[Message], lines: list[bytes]) -> None:
        part.lines.extend(lines)
        part.values.extend(m.value for m in messages)  # type: ignore[misc]
        part.offsets.extend(m.offset for m in messages)
        part.keys.extend(m.key for m in messages)
        part.headers.extend([getattr(m, "headers", None) for m in messages])

    def _take(self, buffer: _PartitionBuffer, messages: list[Message]) -> None:
        """Decode messages of one partition one by one: each bad one a dead letter."""
        part, columns = buffer.part, self.columns
        kept: list[tuple[Message, Any, bytes, dict[str, Any] | None]] = []
        for message in messages:
            try:
                refused = self.refuse(getattr(message, "headers", None)) if self.refuse else None
                if refused is not None:
                    raise InvalidRecord(refused)
                if self.read is not None:
                    record, extras = self.read(message.value)
                else:
                    record, extras = self.decode(message.value), None
                if extras is not None:  # kept in GCS as sent: the line is the message
                    line = message.value  # (on one line: JSON may be sent pretty-printed)
                    if b"\n" in line or b"\r" in line:  # type: ignore[operator]
                        line = orjson.dumps(orjson.loads(line))  # type: ignore[arg-type]
                    self._count_unknown(extras)
                else:
                    line = columns.encode(record) if columns is not None else message.value
            except InvalidRecord as error:
                self._dead(buffer, message, error.reason, error.field)
                continue
            except Exception as error:  # a poison pill must never stop the loop
                reason = f"cannot decode: {type(error).__name__}: {error}"
                self._dead(buffer, message, reason, None)
                continue
            kept.append((message, record, line, extras))  # type: ignore[arg-type]
        if not kept:
            return
        records = [record for _, record, _, _ in kept]
        if columns is None:
            part.chunks.append(records)
        else:
            try:
                table = columns.to_table(records)
            except Exception:  # some record the columns cannot hold: find it
                kept = [item for item in kept if self._fits(buffer, item[0], item[1])]
                try:
                    table = columns.to_table([record for _, record, _, _ in kept])
                except Exception as error:  # each fits alone, not together: all are letters
                    for message, _, _, _ in kept:
                        self._dead(buffer, message, f"cannot be held as columns: {error}", None)
                    return
            part.chunks.append(table)
        part.keep_extras([extras for *_, extras in kept], len(part))
        self._keep(part, [m for m, _, _, _ in kept], [line for _, _, line, _ in kept])
        self._buffered += len(kept)

    def _count_unknown(self, extras: dict[str, Any]) -> None:
        """Count a record of a newer contract and its fields (at most 100 names)."""
        self.counts.newer += 1
        counted = self.counts.unknown_fields
        for name in extras:
            if name in counted or len(counted) < 100:
                counted[name] = counted.get(name, 0) + 1

    def _fits(self, buffer: _PartitionBuffer, message: Message, record: Any) -> bool:
        """Whether ``record`` converts to columns; if not, it is a dead letter."""
        try:
            self.columns.to_table([record])  # type: ignore[union-attr]
            return True
        except Exception as error:
            self._dead(buffer, message, f"cannot be held as columns: {error}", None)
            return False

    def _dead(
        self, buffer: _PartitionBuffer, message: Message, reason: str, field: str | None
    ) -> None:
        buffer.dead.append(
            DeadLetter(
                self.topic,
                buffer.part.partition,
                message.offset,
                message.key,
                message.value,
                reason[:MAX_REASON_CHARS],
                field,
                "decode",
                headers=tuple(getattr(message, "headers", None) or ()),
            )
        )

    # --- batching -----------------------------------------------------------------

    @property
    def buffered_messages(self) -> int:
        return sum(b.messages for b in self._buffers.values())

    def _oldest(self) -> float | None:
        return min((b.opened for b in self._buffers.values()), default=None)

    def due(self) -> bool:
        """The open batch is full, or its oldest message waited ``flush_interval``."""
        oldest = self._oldest()
        if oldest is None:
            return False
        if self._buffered >= self.batch_size or self.buffered_messages >= self.batch_size:
            return True
        return self.clock() - oldest >= self.flush_interval

    def poll_timeout(self, longest: float = 0.2) -> float:
        """Seconds the next poll may block without delaying a time-based flush."""
        oldest = self._oldest()
        if oldest is None:
            return longest
        return max(0.0, min(oldest + self.flush_interval - self.clock(), longest))

    @property
    def can_seal(self) -> bool:
        """Fewer than ``max_inflight`` batches are being written."""
        return len(self.inflight) < self.max_inflight

    def seal(self, closed_at: datetime, generation: int = -1) -> SealedBatch | None:
        """Close the open batch (None if empty); it joins the batches in flight.

        ``generation``: the group generation the batch is read in; it is written and
        committed only in that generation (see :mod:`pipeline_lib.kafka_io.membership`).
        """
        if not self.can_seal:
            raise RuntimeError(
                f"{len(self.inflight)} sealed batches are in flight: complete the oldest first"
            )
        if not self._buffers:
            return None
        now = self.clock()
        buffers = list(self._buffers.values())
        self._sealed += 1
        sealed = SealedBatch(
            number=self._sealed,
            batch=Batch([b.part for b in buffers], closed_at, self.group, generation),
            dead_letters=[d for b in buffers for d in b.dead],
            offsets={b.part.partition: b.next_offset for b in buffers},
            first_offsets={b.part.partition: b.first_offset for b in buffers},
            messages=sum(b.messages for b in buffers),
            age=now - min(b.opened for b in buffers),
            sealed_at=now,
        )
        self._buffers.clear()
        self._buffered = 0
        self.inflight.append(sealed)
        return sealed

    # --- committing ---------------------------------------------------------------

    @property
    def oldest(self) -> SealedBatch | None:
        """The batch in flight that must be committed next."""
        return self.inflight[0] if self.inflight else None

    def commit_plan(self, owned: set[int]) -> dict[int, int]:
        """Offsets to commit for the oldest batch in flight, for partitions still owned."""
        sealed = self.oldest
        if sealed is None or not sealed.committable:
            return {}
        return {p: o for p, o in sealed.offsets.items() if p in owned}

    def committed_inflight(self, offsets: dict[int, int], rejected: int = 0) -> SealedBatch:
        """The sinks wrote the oldest batch in flight and ``offsets`` were committed.

        ``rejected`` records were refused by a sink (and dead-lettered). Partitions of
        the batch left out of ``offsets`` were revoked meanwhile: their messages are
        counted as discarded (the new owner reads them again).
        """
        if not self.inflight:
            raise RuntimeError("no batch in flight")
        sealed = self.inflight.pop(0)
        self.committed.update(offsets)
        landed_parts = [p for p in sealed.batch.parts if p.partition in offsets]
        records = sum(len(p) for p in landed_parts)
        self.counts.landed += records - rejected
        self.counts.dead_letters += sealed.dead_letters_in(offsets, rejected)
        self.counts.discarded += sealed.messages - sealed.covered(offsets)
        self.counts.batches += 1
        return sealed

    def rewind(self, owned: set[int], fenced: bool = False) -> dict[int, int | None]:
        """A commit was refused (or ``fenced``: the membership the batch was read in
        moved on): drop everything held; seek every partition to its commit."""
        if fenced:
            self.counts.fenced += 1
        else:
            self.counts.refused_commits += 1
        self._drop_all()
        return dict.fromkeys(sorted(owned))

    def rebalance(self, owned: set[int], lost: bool = False) -> dict[int, int | None]:
        """The assignment changed to ``owned``: where each owned partition must read next.

        Held messages of partitions no longer owned are dropped (counted discarded).
        When the membership was ``lost`` (the group moved on without us), everything
        held is dropped and the batch in flight will not be committed. The answer maps
        each owned partition to the offset after what is still held, or ``None`` for
        "the committed offset".
        """
        self.counts.rebalances += 1
        if lost:
            self._drop_all()
        else:
            for partition in [p for p in self._buffers if p not in owned]:
                self._drop_buffer(partition)
        return {p: self.next_offset(p) for p in sorted(owned)}

    def abandon(self) -> int:
        """The run ends without writing what is held (an error): count it as discarded."""
        held = self.buffered_messages + sum(s.messages for s in self.inflight)
        self._drop_all()
        return held

    def _drop_buffer(self, partition: int) -> None:
        buffer = self._buffers.pop(partition)
        self._buffered -= len(buffer.part)
        self.counts.discarded += buffer.messages
        log.info(
            "partition %d: %d uncommitted messages dropped; they will be read again",
            partition,
            buffer.messages,
        )

    def _drop_all(self) -> None:
        for partition in list(self._buffers):
            self._drop_buffer(partition)
        for sealed in self.inflight:
            sealed.committable = False
            self.counts.discarded += sealed.messages
        self.dropped.extend(self.inflight)
        self.inflight = []

    @property
    def idle(self) -> bool:
        """Nothing held: no open buffer and no batch in flight."""
        return not self._buffers and not self.inflight
