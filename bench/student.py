"""One student of the class figure, as a process of its own: the student's producer (in
a thread, at classroom pace) and consumer (the pipeline's, until idle), both with the
student's login from the environment (their handout). Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import threading

from bench.services import simulated_ticks
from pipeline_lib.home import load_settings
from pipeline_lib.kafka_io.consume import consume
from pipeline_lib.kafka_io.producer import produce


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings()
    ticks = simulated_ticks(args.ticks, seed=args.seed)
    produced: dict = {}

    def producer() -> None:
        report = produce(settings, ticks, rate=args.rate, ensure=False)
        produced.update(delivered=report.delivered, failed=report.failed)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    bound = args.ticks / args.rate + 180
    report = consume(settings, until_idle=8, duration=bound, flush_interval=1.0)
    thread.join(timeout=60)
    print(
        json.dumps(
            {
                **produced,
                "consumed": report.consumed,
                "written": report.written,
                "stopped": report.stopped_because,
            }
        )
    )


if __name__ == "__main__":
    main()
