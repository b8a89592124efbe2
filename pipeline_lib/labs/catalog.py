"""The labs: what each teaches, where its notebook is, how big a run is, its checks.

The one table of labs: ``lab list`` prints it, ``lab release`` and ``lab grade`` find
labs in it, the teachers' docs page and the tests read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.core.config import PROJECT_ROOT, Settings
from pipeline_lib.labs import bars, checks
from pipeline_lib.labs.checks import Check, Run
from pipeline_lib.labs.kit import LabError

LABS_DIR = PROJECT_ROOT / "notebooks" / "labs"


@dataclass(frozen=True)
class Lab:
    """One lab: ``name`` (what ``lab grade`` takes), its notebook ``lab<number>_<name>``,
    what it teaches, about how long a student needs, the run size the grader sets
    (papermill parameters beside ``seed``), its checks, and what the grader lands
    before the notebook runs."""

    number: int
    name: str
    title: str
    teaches: str
    student_minutes: int
    checks: Callable[[Run], list[Check]]
    size: dict[str, Any] = field(default_factory=dict)
    # What the grader lands before the notebook runs (settings, parameters), if any.
    prepare: Callable[[Settings, dict[str, Any]], None] | None = None

    @property
    def notebook(self) -> Path:
        return LABS_DIR / f"lab{self.number}_{self.name.replace('-', '_')}.ipynb"


LABS = (
    Lab(
        1,
        "keys",
        "Keys and partitions",
        "which partition each symbol goes to, and why order holds per key only",
        20,
        checks.keys,
        {"ticks": 600},
    ),
    Lab(
        2,
        "commit",
        "Commit after write",
        "at-least-once: a commit says done, so it comes after the write; a crash in "
        "between reads again instead of losing",
        30,
        checks.commit,
        {"ticks": 1_000},
    ),
    Lab(
        3,
        "dead-letters",
        "Dead letters for a new rule",
        "a validator for a new rule: bad records go to the dead-letter topic with key "
        "and reason, good ones land, nothing is dropped",
        30,
        checks.dead_letters,
        {"ticks": 600},
    ),
    Lab(
        4,
        "bars",
        "Per-minute bars and VWAP in SQL",
        "OHLCV and VWAP over the raw table, each event once, reading only the symbol's rows",
        40,
        bars.bars,
        {"ticks": 1_500},
        bars.prepare,
    ),
    Lab(
        5,
        "group",
        "A consumer group of two",
        "members join and leave mid-stream; the group rebalances and nothing is lost",
        30,
        checks.group,
        {"ticks": 2_000},
    ),
    Lab(
        6,
        "contract",
        "A producer one contract version ahead",
        "a minor contract version adds fields; the consumer lands them as new columns, "
        "with no dead letter",
        25,
        checks.contract,
        {"ticks": 600},
    ),
)


def find(name: str) -> Lab:
    """The lab called ``name`` (or numbered so); one line naming the labs otherwise."""
    for lab in LABS:
        if name in (lab.name, str(lab.number), f"lab{lab.number}", lab.notebook.stem):
            return lab
    names = ", ".join(lab.name for lab in LABS)
    raise LabError(f"no lab {name!r}: the labs are {names} (python -m pipeline_lib lab list)")
