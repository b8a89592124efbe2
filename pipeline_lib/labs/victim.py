"""The commit lab's victim: the student's ``handle`` cell run as a consumer that kills
itself (SIGKILL) right after the first step (a land or a commit) it takes in poll
number ``KILL_AT_POLL``: between the two steps of that poll, whichever comes first.

Run as ``python -m pipeline_lib.labs.victim CELL.py KILL_AT_POLL`` with the run's
settings in the environment (:func:`pipeline_lib.labs.checks.crash_check` does);
``KILL_AT_POLL`` 0 runs it until idle. A process of its own, because only a real
SIGKILL shows what a crash between a write and a commit leaves behind. The cell runs
on its own, as the notebook's cell of that grade id stands.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline_lib.home import load_settings
from pipeline_lib.labs.kit import run_loop


def main(argv: Sequence[str]) -> None:
    cell, kill_at_poll = Path(argv[0]), int(argv[1])
    space: dict[str, Any] = {}
    exec(compile(cell.read_text(), "<the handle cell>", "exec"), space)
    handle = space.get("handle")
    if not callable(handle):
        sys.exit("the cell defines no function handle(records, out)")
    polls = 0

    def counted(records: Any, out: Any) -> Any:
        nonlocal polls
        polls += 1
        return handle(records, out)

    def step(what: str) -> None:
        if polls == kill_at_poll:
            os.kill(os.getpid(), signal.SIGKILL)

    # The broker's shortest session (group.min.session.timeout.ms): the restarted
    # member waits that long for the group to give up on the killed one.
    run_loop(
        load_settings(),
        counted,
        poll_records=200,
        until_idle_s=4.0,
        on_step=step,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=2_000,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
