"""Helpers of the browser tests: land more ticks of the same run, take screenshots."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from tests.conftest import REPO
from tests.helpers import produce_ticks, simulated

SCREENSHOTS = REPO / "output" / "browser"
SEED = 31
FIRST_TICKS = 1_200  # 100 bars of each of the 12 default symbols


def land_more(settings: Settings, count: int) -> None:
    """The next ``count`` ticks of the same run (same ids scheme, later times)."""
    ticks = simulated(FIRST_TICKS + count, seed=SEED)[FIRST_TICKS:]
    produce_ticks(settings, ticks)
    SinkConsumer(settings).run(until_idle=2)


def screenshot(target: object, name: str) -> Path:
    """A PNG of a page or one element of it, in output/browser/, to be looked at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path
