"""A broker-failure drill: ticks stream and land while a broker is killed and restarted.

The fault-tolerance notebook (05) runs it step by step so a class can watch each
stage: the producer and the sink consumer run in background threads of the kernel,
one broker is SIGKILLed, Kafka elects new leaders and shrinks the in-sync replicas,
the broker comes back and catches up, and at the end three counts are compared:
records Kafka acknowledged, distinct events in BigQuery, events in GCS.

It changes only what it needs: brokers it started or killed are put back as found.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline_lib import local
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.ops import cluster


class DrillError(PipelineError):
    """The drill cannot run here; the message says what to start or change."""


@dataclass
class DrillCounts:
    """Where every tick of the drill's run went."""

    sent: int
    acknowledged: int
    failed: int
    in_bigquery: int
    in_gcs: int
    acknowledged_missing_in_bigquery: int
    acknowledged_missing_in_gcs: int

    @property
    def nothing_lost(self) -> bool:
        """Every acknowledged tick landed in both sinks, and Kafka acknowledged them all."""
        return (
            self.failed == 0
            and self.acknowledged == self.sent
            and self.acknowledged_missing_in_bigquery == 0
            and self.acknowledged_missing_in_gcs == 0
            and self.acknowledged == self.in_bigquery == self.in_gcs
        )

    def line(self) -> str:
        return (
            f"acknowledged={self.acknowledged} bigquery={self.in_bigquery} gcs={self.in_gcs} "
            f"failed={self.failed} missing_in_bigquery={self.acknowledged_missing_in_bigquery} "
            f"missing_in_gcs={self.acknowledged_missing_in_gcs}"
        )


@dataclass
class Timeline:
    """When acknowledgements arrived, and what the drill did when (seconds from start)."""

    started: float = field(default_factory=time.monotonic)
    acknowledged_at: list[float] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.events.append((time.monotonic() - self.started, what))


class BackgroundStream:
    """A steady producer and a sink consumer in threads of this process."""

    def __init__(self, settings: Settings, ticks: list[Any], rate: float) -> None:
        from pipeline_lib.kafka_io.consumer import SinkConsumer

        self.settings = settings
        self.ticks = ticks
        self.rate = rate
        self.acknowledged: set[int] = set()
        self.timeline = Timeline()
        self.report: Any = None
        self.consumer = SinkConsumer(settings, batch_size=1_000, flush_interval=0.5)
        self.consume_report: Any = None
        self._errors: list[BaseException] = []
        self._producer = threading.Thread(target=self._produce, name="drill-producer")
        self._consumer = threading.Thread(target=self._consume, name="drill-consumer")

    def _acknowledged(self, index: int) -> None:
        self.acknowledged.add(index)
        self.timeline.acknowledged_at.append(time.monotonic() - self.timeline.started)

    def _produce(self) -> None:
        from pipeline_lib.kafka_io.producer import produce

        try:
            self.report = produce(
                self.settings, self.ticks, rate=self.rate, on_acknowledged=self._acknowledged
            )
        except BaseException as error:  # shown by finish(), not lost in a thread
            self._errors.append(error)

    def _consume(self) -> None:
        try:
            self.consume_report = self.consumer.run(handle_signals=False)
        except BaseException as error:
            self._errors.append(error)

    def start(self) -> BackgroundStream:
        self.timeline = Timeline()
        self._consumer.start()
        self._producer.start()
        return self

    def progress(self) -> str:
        """One line: what was sent, acknowledged and landed so far."""
        counts = self.consumer.core.counts
        return (
            f"t={time.monotonic() - self.timeline.started:5.1f}s  "
            f"acknowledged {len(self.acknowledged):,} of {len(self.ticks):,}  "
            f"landed {counts.landed:,}"
        )

    def finish(self, timeout_s: float = 180.0) -> None:
        """Wait for the producer, then for the consumer to land everything it can read."""
        self._producer.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._errors:
            if self.consumer.core.counts.landed >= len(self.acknowledged) and _lag(
                self.settings
            ) in (0, None):
                break
            time.sleep(0.5)
        self.consumer.stop()
        self._consumer.join(timeout=60)
        if self._errors:
            raise DrillError(f"the background stream failed: {self._errors[0]!r}")


def _lag(settings: Settings) -> int | None:
    from pipeline_lib.analysis.monitor import kafka_summary

    summary = kafka_summary(settings)
    return summary.get("lag") if summary.get("exists") else None


class FaultDrill:
    """Kill the leader of a partition while ticks stream; put everything back afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here: list[int] = []
        self.killed: list[int] = []
        self.stream: BackgroundStream | None = None

    def prepare(self) -> cluster.ClusterState:
        """Check this is a local cluster of 3+, start brokers that are down, provision."""
        from pipeline_lib.ops.provision import provision

        settings = self.settings
        if not settings.is_local:
            raise DrillError(
                "The drill kills local brokers; on a real cluster use its own tools (and "
                "never on one that others use)."
            )
        if settings.brokers < 3:
            raise DrillError(
                f"This setup runs {settings.brokers} broker: the drill needs a replicated "
                "cluster. Run `python -m pipeline_lib down --purge` and `python -m "
                "pipeline_lib up --brokers 3` (or set PIPELINE_BROKERS=3 on a fresh "
                "PIPELINE_HOME), then run this notebook again."
            )
        for node in local.kafka_nodes(settings):
            if not node.running_pid():
                node.up()
                self.started_here.append(node.node_id)
        provision(settings, start_local=False)
        return cluster.wait_for(settings, cluster.fully_replicated, "all replicas in sync", 90)

    def start_stream(self, records: int, rate: float, seed: int) -> BackgroundStream:
        """Stream ``records`` simulated ticks at ``rate`` per second, and land them."""
        from itertools import islice

        from pipeline_lib.sources import source_from_parameters

        ticks = list(islice(source_from_parameters(self.settings, seed=seed), records))
        self.stream = BackgroundStream(self.settings, ticks, rate).start()
        return self.stream

    def kill_leader(self, partition: int = 0) -> int:
        """SIGKILL the broker leading ``partition`` of the topic; its id."""
        state = cluster.describe_cluster(self.settings)
        victim = state.partition(self.settings.topic, partition).leader
        if victim < 0:
            raise DrillError(f"partition {partition} has no leader to kill")
        local.stop_broker(self.settings, victim, kill=True)
        self.killed.append(victim)
        if self.stream:
            self.stream.timeline.mark(f"broker {victim} killed")
        return victim

    def wait_for_new_leader(self, victim: int, partition: int = 0) -> tuple[float, Any]:
        """Seconds until ``partition`` is led by another broker, and the state then."""
        started = time.monotonic()
        topic = self.settings.topic
        state = cluster.wait_for(
            self.settings,
            lambda s: (
                s.partition(topic, partition).leader not in (-1, victim)
                and victim not in s.partition(topic, partition).isr
            ),
            f"a new leader for partition {partition}",
            timeout_s=60,
        )
        if self.stream:
            self.stream.timeline.mark("new leader")
        return time.monotonic() - started, state

    def restart(self, broker: int) -> cluster.ClusterState:
        """Start ``broker`` again and wait until it is back in every in-sync replica set."""
        local.start_broker(self.settings, broker)
        self.killed.remove(broker)
        state = cluster.wait_for(self.settings, cluster.fully_replicated, "all replicas in sync")
        if self.stream:
            self.stream.timeline.mark(f"broker {broker} back in sync")
        return state

    def finish(self) -> DrillCounts:
        """Wait for the stream to land, count where every tick went, restore the cluster."""
        if self.stream is None:
            raise DrillError("start_stream() first")
        try:
            self.stream.finish()
            return self.counts()
        finally:
            self.restore()

    def counts(self) -> DrillCounts:
        from pipeline_lib.analysis.monitor import bigquery_event_ids, gcs_event_ids

        stream = self.stream
        assert stream is not None
        ids = {t.event_id for t in stream.ticks}
        acknowledged = {stream.ticks[i].event_id for i in stream.acknowledged}
        run_prefix = next(iter(ids)).split(":", 1)[0] + ":"
        in_bigquery = set(bigquery_event_ids(self.settings, run_prefix)) & ids
        in_gcs = set(gcs_event_ids(self.settings, run_prefix)) & ids
        report = stream.report
        return DrillCounts(
            sent=report.sent if report else 0,
            acknowledged=len(acknowledged),
            failed=(report.failed + report.undelivered) if report else 0,
            in_bigquery=len(in_bigquery),
            in_gcs=len(in_gcs),
            acknowledged_missing_in_bigquery=len(acknowledged - in_bigquery),
            acknowledged_missing_in_gcs=len(acknowledged - in_gcs),
        )

    def restore(self) -> None:
        """Start brokers this drill killed, stop brokers it started: as found."""
        for broker in list(self.killed):
            local.start_broker(self.settings, broker)
            self.killed.remove(broker)
        nodes = local.kafka_nodes(self.settings)
        if len(self.started_here) == len(nodes):
            local.down(self.settings, kafka_only=True)  # all at once, keeping a quorum
        elif self.started_here:
            cluster.wait_for(self.settings, cluster.fully_replicated, "all replicas in sync")
            for broker in self.started_here:
                local.stop_broker(self.settings, broker)
        self.started_here.clear()
