"""Each benchmark figure is a function ``(size) -> dict`` with its numbers and goal."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

from pipeline_lib.schema import encode
from pipeline_lib.sources.csv_replay import CsvReplay
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig

SIZES = {"tiny": 0.01, "full": 1.0}


def _rate(iterable, count: int) -> float:
    started = time.perf_counter()
    consumed = sum(1 for _ in itertools.islice(iterable, count))
    elapsed = time.perf_counter() - started
    return consumed / elapsed


def simulator_rate(size: str) -> dict:
    """Records per second the simulator yields on one core (goal: >= 200,000).

    Side by side in the same run: the same records also JSON-encoded (what the
    producer does next), and CSV replay, so the ratio shows what the source costs.
    """
    n = max(2_000, int(1_000_000 * SIZES[size]))
    config = SimulatorConfig(seed=1, start=datetime(2024, 1, 2, 14, 30, tzinfo=UTC))
    sim = _rate(MarketSimulator(config), n)
    sim_encoded = _rate(map(encode, MarketSimulator(config)), n)
    csv_rows = len(CsvReplay())
    csv = _rate(CsvReplay(), csv_rows)  # parse + validate every row of the sample file
    return {
        "name": "simulator_rate",
        "records": n,
        "simulator_records_per_s": round(sim),
        "simulator_plus_json_records_per_s": round(sim_encoded),
        "json_encoding_share": round(1 - sim_encoded / sim, 3) if sim else None,
        "csv_replay_records_per_s": round(csv),
        "goal": ">= 200,000 records/s",
        "met": sim >= 200_000,
    }


FIGURES = {"simulator_rate": simulator_rate}
