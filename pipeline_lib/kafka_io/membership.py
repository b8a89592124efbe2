"""Is this consumer still the group member that read what it holds? The zombie check.

A member frozen past its session timeout (a closed laptop lid, a paused VM, a long
GC pause, SIGSTOP) is removed from the group and its partitions go to another
member. When it wakes up, its Kafka client still believes in the old generation
until a heartbeat is answered, and its threads carry on where they stopped: a
batch it read before the freeze would be written over what the new owner wrote.

:class:`Fence` answers, before a batch is sealed: is the membership confirmed
(joined, and the coordinator answered a heartbeat or a join lately)? And
before each sink writes the batch and before its offsets are committed: is the
member still in the generation the batch was sealed in, and confirmed lately? A
batch is only written and committed in the generation it was sealed in.

What no client-side check can close: a write already on its way to a sink when
the member freezes lands when it wakes up. The GCS sink's replace rule
(:mod:`pipeline_lib.sinks.gcs`) makes such a late write harmless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener

from pipeline_lib.core.errors import PipelineError

NO_GENERATION = -1


class Fenced(PipelineError):
    """This member may no longer own what it read: its batch is neither written nor
    committed, and whoever owns the partitions now reads them again."""


@dataclass(frozen=True)
class MemberState:
    """What the Kafka client knows of its group membership right now."""

    generation: int  # the group generation joined; NO_GENERATION when not a member
    confirmed_at: float  # time.monotonic() of the coordinator's last answer (-inf: none)


def member_state(consumer: Any) -> MemberState:
    """The membership of a kafka-python consumer (or of any consumer with its own
    ``member_state()``: test doubles, another client's adapter).

    ``confirmed_at`` is the last answered heartbeat only: kafka-python also resets
    its session timer when it finds the coordinator again, which a member waking up
    from a freeze does before any answer about its membership. A join's answer is
    added by the consumer (the time its partitions were assigned). kafka-python 3.0
    exposes the generation publicly (``group_metadata()``), the heartbeat time only
    on its coordinator; a unit test fails if a new version moves either.
    """
    own = getattr(consumer, "member_state", None)
    if own is not None:
        return own()
    meta = consumer.group_metadata()
    return MemberState(
        generation=meta.generation_id if meta.generation_id is not None else NO_GENERATION,
        confirmed_at=consumer._coordinator.heartbeat.last_receive,
    )


def _suspended_seconds() -> float:
    """Seconds the whole machine has slept since boot (Linux), which the monotonic
    clock, and so kafka-python's heartbeat times, does not count. 0 elsewhere
    (macOS: a suspended machine's sleep is not seen; see docs/delivery.md, "Zombie members")."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return 0.0
    return time.clock_gettime(boottime) - time.monotonic()


class Fence:
    """Refuses writes and commits of a member that may have been replaced.

    ``stale_after``: a membership whose last confirmation is older than this is
    unconfirmed. Half the session timeout: the coordinator expires a member one
    session timeout after the last heartbeat it received, which is before the
    answer we saw, and a healthy member is answered every heartbeat interval.
    """

    def __init__(
        self,
        state: Callable[[], MemberState],
        stale_after: float,
        suspended: Callable[[], float] = _suspended_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self.stale_after = stale_after
        self._suspended = suspended
        self._clock = clock
        self._lock = threading.Lock()  # looked at from the consumer and writer threads
        # The latest confirmation seen (only moves forward), and the machine's sleep
        # counter when it was seen: sleep after it makes the confirmation older.
        self._confirmed_at = float("-inf")
        self._slept_at_confirm = 0.0

    def _look(self) -> tuple[MemberState, float]:
        """The membership now, and the age of its last confirmation in seconds."""
        state = self._state()
        slept = self._suspended()
        now = self._clock()
        with self._lock:
            if state.confirmed_at > self._confirmed_at:
                self._confirmed_at = state.confirmed_at
                self._slept_at_confirm = slept
            return state, now - self._confirmed_at + max(0.0, slept - self._slept_at_confirm)

    def confirmed_generation(self) -> int | None:
        """The generation a batch sealed now belongs to, or None while the membership
        is unconfirmed (hold the batch: the next polls settle it one way or the other)."""
        state, age = self._look()
        if state.generation == NO_GENERATION or age > self.stale_after:
            return None
        return state.generation

    def check(self, generation: int, before: str) -> None:
        """Raise :class:`Fenced` unless the member is still in ``generation`` and was
        confirmed lately (a rebalance in progress is no reason to stop: the member
        owns its partitions until it rejoins, and the commit is refused meanwhile)."""
        state, age = self._look()
        if state.generation != generation:
            raise Fenced(
                f"not {before}: the batch was read in group generation {generation}, "
                f"the member is now in {state.generation}"
            )
        if age > self.stale_after:
            raise Fenced(
                f"not {before}: no answer from the group coordinator for {age:.1f}s (the "
                "group may have given this member's partitions to another)"
            )


class RebalanceListener(ConsumerRebalanceListener):
    """Notes that the assignment changed; the consumer's own thread acts on it.

    kafka-python runs these callbacks on its IO loop, so they must not block (a
    flush or a commit from here would deadlock). After the poll that ran them, the
    loop asks the :class:`Batcher` where each owned partition must read next and
    seeks there, so no client-side position survives a rebalance unchecked.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = False
        self._lost = False
        self.events: list[tuple[str, list[int]]] = []
        self.assigned_at = float("-inf")

    def _note(self, kind: str, partitions: Any, lost: bool = False) -> None:
        with self._lock:
            self._changed = True
            self._lost = self._lost or lost
            if partitions or kind == "assigned":  # kafka-python revokes nothing before a join
                self.events.append((kind, sorted(tp.partition for tp in partitions)))

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._note("revoked", revoked)

    def on_partitions_lost(self, lost: Any) -> None:
        self._note("lost", lost, lost=True)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned_at = self._clock()  # the coordinator just answered a join
        self._note("assigned", assigned)

    def take_change(self) -> bool:
        with self._lock:
            changed, self._changed = self._changed, False
            return changed

    def take_lost(self) -> bool:
        with self._lock:
            lost, self._lost = self._lost, False
            return lost
