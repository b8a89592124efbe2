"""The broker dies for longer than the producer's delivery timeout.

A broker of its own (own home and ports) is SIGKILLed while `produce --rate` runs
with a 5 s delivery timeout and stays down for 15 s. The producer must not raise: it
ends with a non-zero exit, a count of what was not delivered and the command that
resumes from the first unacknowledged record. After the restart, running that
command and a consumer lands every tick exactly once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from pipeline_lib import local
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig
from tests.helpers import bq_event_ids

TOTAL = 6_000
START = "2024-01-02T14:30:00+00:00"


def produce_command(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env(), "PIPELINE_DELIVERY_TIMEOUT_S": "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline_lib", "produce", "--quiet", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_outage_longer_than_the_delivery_timeout_is_counted_and_resumable(settings, tmp_path):
    settings = settings.with_overrides(
        home=tmp_path,
        kafka_bootstrap_servers="127.0.0.1:29392",
        kafka_controller_port=29393,
        delivery_timeout_s=5.0,
    )
    broker = local.KafkaBroker(settings)
    broker.up()
    try:
        first = produce_command(
            settings,
            *("--seed", "7", "--start", START, "--max-records", str(TOTAL), "--rate", "400"),
        )
        time.sleep(4)
        os.kill(broker.running_pid(), signal.SIGKILL)
        time.sleep(15)  # three times the delivery timeout
        out, err = first.communicate(timeout=120)
        assert first.returncode == 1, err[-2000:]
        assert "Traceback" not in err
        assert "NOT DELIVERED" in out, out
        acknowledged = int(re.search(r": ([\d,]+) acknowledged", out).group(1).replace(",", ""))
        assert 0 < acknowledged < TOTAL
        resume = re.search(r"resume with: python -m pipeline_lib produce (.*)", out).group(1)
        skip = int(re.search(r"--skip (\d+)", resume).group(1))
        assert skip <= acknowledged  # nothing acknowledged is skipped...

        broker.up()
        second = produce_command(settings, "--rate", "4000", *resume.split())
        out2, err2 = second.communicate(timeout=180)
        assert second.returncode == 0, out2 + err2[-2000:]

        SinkConsumer(settings).run(until_idle=3)
        expected = {
            t.event_id
            for _, t in zip(
                range(TOTAL),
                MarketSimulator(SimulatorConfig(seed=7, start=_start())),
                strict=False,
            )
        }
        landed = bq_event_ids(settings)
        assert set(landed) == expected  # ...and resuming sends all the rest
        assert set(landed.values()) == {1}
    finally:
        broker.down()


def _start():
    from datetime import datetime

    return datetime.fromisoformat(START)
