"""One student of the class figure, as a process of its own: the student's consumer
(the pipeline's) and producer (in a thread, at classroom pace), both with the
student's login from the environment (their handout); the consumer stops once it has
landed everything after the producer is done. Prints one JSON line.

The producer waits until the consumer has joined its group, says so by a file
``<ready>``, and starts when the file ``<go>`` appears: the bench starts every
student's producer at once, after the slowest start-up, so the class's two minutes
are two minutes of all thirty at work, and start-up (thirty processes on two cores)
is measured apart, not hidden in the freshness."""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

from bench.services import simulated_ticks
from pipeline_lib.clients.kafka import kafka_admin
from pipeline_lib.core.config import Settings
from pipeline_lib.home import load_settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.records.routes import route
from pipeline_lib.sinks.landing import landing_sinks


def joined(settings: Settings) -> bool:
    """The student's ticks group is stable with a member (asked as the student)."""
    group = route(settings).group
    admin = kafka_admin(settings)
    try:
        described = admin.describe_groups([group]).get(group) or {}
    finally:
        admin.close()
    return described.get("group_state") == "Stable" and bool(described.get("members"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--go", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings()
    ticks = simulated_ticks(args.ticks, seed=args.seed)
    produced: dict = {}
    consumer = SinkConsumer(settings, sinks=landing_sinks(settings), flush_interval=1.0)

    def producer() -> None:
        while not joined(settings):
            time.sleep(0.5)
        args.ready.touch()
        while not args.go.exists():
            time.sleep(0.05)
        report = produce(settings, ticks, rate=args.rate, ensure=False)
        produced.update(delivered=report.delivered, failed=report.failed)
        consumer.stop_when_caught_up()  # what a student does once their producer is done

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    bound = args.ticks / args.rate + 600
    report = consumer.run(duration=bound)
    thread.join(timeout=60)
    counts = report.counts
    summary = {
        "consumed": report.consumed,
        "written": report.written,
        "discarded": report.discarded,
        "rebalances": counts.rebalances,
        "fenced": counts.fenced,
        "batches": report.batches,
        "bigquery_ms_per_batch": round(
            1000 * report.stage_seconds.get("sink:bigquery", 0.0) / max(1, report.batches), 1
        ),
        "gcs_ms_per_batch": round(
            1000 * report.stage_seconds.get("sink:gcs", 0.0) / max(1, report.batches), 1
        ),
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    print(json.dumps({**produced, **summary, "stopped": report.stopped_because}))


if __name__ == "__main__":
    main()
