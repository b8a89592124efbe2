"""The crash drill's victim: a sink consumer that commits its first batches, then
kills itself (SIGKILL) between the sinks and the commit of batch ``kill_at``.

Run as ``python -m pipeline_lib.lessons.crash_victim KILL_AT BATCH_SIZE`` with the
drill's settings in the environment (:func:`pipeline_lib.lessons.crash_drill.
run_crash_drill` does); a process of its own, because only a real SIGKILL shows what
a crash leaves behind.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pipeline_lib.home import load_settings
from pipeline_lib.kafka_io.consumer import SinkConsumer


def main(argv: Sequence[str]) -> None:
    kill_at, batch_size = int(argv[0]), int(argv[1])
    closed: list[Any] = []

    def die(batch: Any) -> None:
        closed.append(batch)
        if len(closed) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    SinkConsumer(
        load_settings(),
        stream="ticks",
        batch_size=batch_size,
        flush_interval=30,
        before_commit=die,
    ).run(until_idle=15)


if __name__ == "__main__":
    main(sys.argv[1:])
