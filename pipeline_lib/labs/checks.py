"""Each lab's checks: facts about what the student's run landed, never what it printed.

A check function takes the :class:`Run` the grader made (the run's own names, the
executed notebook, the seed it was given) and returns :class:`Check`s, one line each,
a failure with a hint a student can act on. The ticks a run should have landed are
drawn again from the simulator at the run's seed (:func:`pipeline_lib.labs.kit.
simulated_ticks`), so a notebook cannot pass by printing numbers: it has to land them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from pipeline_lib.core.config import Settings
from pipeline_lib.labs import facts, kit
from pipeline_lib.records.routes import route

VICTIM = "pipeline_lib.labs.victim"  # the student's consumer, run to be killed


@dataclass(frozen=True)
class Check:
    """One graded fact. ``detail`` says what was found; ``hint`` what to do about a
    failure."""

    name: str
    passed: bool
    detail: str
    hint: str = ""
    points: float = 1.0

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        hint = f" Hint: {self.hint}" if self.hint and not self.passed else ""
        return f"{mark} {self.name}: {self.detail}.{hint}"


def check(name: str, passed: bool, detail: str, hint: str = "") -> Check:
    return Check(name, bool(passed), detail, hint)


@dataclass
class Run:
    """One graded run: the names it ran on, its executed notebook, its parameters."""

    settings: Settings
    executed: Path
    parameters: dict[str, Any]
    error: str | None = None  # the notebook's first error, as one line
    scratch: list[Settings] = field(default_factory=list)  # more names the checks used

    @property
    def seed(self) -> int:
        return int(self.parameters["seed"])

    def ticks(self, count_parameter: str = "ticks") -> list[Any]:
        """The ticks the notebook was asked to send."""
        return kit.simulated_ticks(int(self.parameters[count_parameter]), self.seed)

    def notebook(self) -> Any:
        return nbformat.read(self.executed, as_version=4)

    def answers(self) -> dict[str, Any]:
        """What the notebook showed with :func:`pipeline_lib.labs.kit.answer`."""
        found = {}
        for cell in self.notebook().cells:
            for output in cell.get("outputs", []):
                shown = output.get("data", {}).get(kit.ANSWER_MIME)
                if isinstance(shown, dict) and "name" in shown:
                    found[shown["name"]] = shown.get("value")
        return found

    def cell_source(self, grade_id: str) -> str | None:
        """The source of the cell whose nbgrader ``grade_id`` is ``grade_id``."""
        for cell in self.notebook().cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                return cell.source
        return None


def notebook_ran(run: Run) -> Check:
    said = (run.error or "").rstrip(".")
    todo = "NotImplementedError" in said
    return check(
        "the notebook runs to the end",
        run.error is None,
        "it ran without an error" if run.error is None else f"it stopped: {said}",
        "fill in every part marked YOUR CODE HERE, then Restart Kernel and Run All Cells"
        if todo
        else "open the notebook in JupyterLab, Restart Kernel and Run All Cells, and read "
        "the error where it stops",
    )


def event_ids(ticks: list[Any]) -> list[str]:
    return [t.event_id for t in ticks]


LAND_HINT = "land the records before you commit them, and run the consumer until it is idle"


def landed(
    run: Run, settings: Settings, ids: list[str], where: str, hint: str = LAND_HINT
) -> list[Check]:
    """Every id in the raw table and, where GCS is kept, in the raw objects."""
    table, objects = facts.table_ids(settings), facts.object_ids(settings)
    missing = [i for i in ids if i not in table]
    found = [
        check(
            f"{where}: every tick in BigQuery",
            not missing,
            f"{len(ids) - len(missing):,} of {len(ids):,} ticks in {route(settings).table_id}",
            hint,
        )
    ]
    if settings.keeps_raw_objects:
        gone = [i for i in ids if i not in objects]
        found.append(
            check(
                f"{where}: every tick in GCS",
                not gone,
                f"{len(ids) - len(gone):,} of {len(ids):,} ticks in gs://{settings.gcs_bucket}",
                hint,
            )
        )
    return found


# --- lab keys ------------------------------------------------------------------------


def keys(run: Run) -> list[Check]:
    ticks = run.ticks()
    messages = facts.topic_messages(run.settings, route(run.settings).topic)
    symbol_of = {t.event_id: t.symbol for t in ticks}
    ts_of = {t.event_id: t.ts for t in ticks}
    seen: dict[str, list[facts.Message]] = {}
    for message in messages:
        event = kit.tick_fields_or_none(message.value)
        if event and event.get("event_id") in symbol_of:
            seen.setdefault(symbol_of[event["event_id"]], []).append(message)
    landed = sum(len(v) for v in seen.values())
    partitions = {s: sorted({m.partition for m in ms}) for s, ms in seen.items()}
    split = {s: p for s, p in partitions.items() if len(p) > 1}
    checks = [
        check(
            "every tick in the topic",
            landed == len(ticks) and len(messages) == len(ticks),
            f"{landed:,} of {len(ticks):,} ticks in {route(run.settings).topic} "
            f"({len(messages):,} messages)",
            "send each tick once with kit.send_keyed",
        ),
        check(
            "each symbol in one partition",
            bool(seen) and not split,
            "; ".join(f"{s} in {p}" for s, p in sorted(partitions.items())) or "no ticks found",
            "key every message by its symbol: the same key always goes to the same partition",
        ),
    ]
    out_of_order = sorted(split)  # across partitions a consumer may read them any way
    for symbol, ms in seen.items():
        times = [ts_of[kit.tick_fields_or_none(m.value)["event_id"]] for m in ms]
        if symbol not in split and times != sorted(times):
            out_of_order.append(symbol)
    checks.append(
        check(
            "each symbol's ticks read in event order",
            bool(seen) and not out_of_order,
            "no ticks found"
            if not seen
            else "each symbol's ticks in order in one partition"
            if not out_of_order
            else f"no one order for: {', '.join(sorted(set(out_of_order)))} "
            "(spread over partitions, or out of order in one)",
            "order holds within a partition only: one key per symbol keeps a symbol's "
            "ticks in one, in the order they were sent",
        )
    )
    predicted = run.answers().get("partitions")
    predicted = predicted if isinstance(predicted, dict) else {}
    actual = {s: p[0] for s, p in partitions.items() if len(p) == 1}
    wrong = {s: (predicted.get(s), p) for s, p in actual.items() if predicted.get(s) != p}
    checks.append(
        check(
            "partitions predicted",
            bool(actual) and len(predicted) >= len(actual) and not wrong,
            "every symbol's partition predicted"
            if actual and not wrong and len(predicted) >= len(actual)
            else "predicted (said, found): "
            + (
                ", ".join(f"{s} {w}" for s, w in sorted(wrong.items()))
                or "nothing to compare: no symbol sits in one partition"
            ),
            "murmur2 of the key bytes, sign bit dropped (& 0x7FFFFFFF), modulo the partitions",
        )
    )
    return checks


# --- lab commit --------------------------------------------------------------------

KILL_AT_POLL = 2  # the victim dies inside its second poll's handling


def commit(run: Run) -> list[Check]:
    ticks = run.ticks()
    checks = landed(run, run.settings, event_ids(ticks), "your run")
    checks.append(crash_check(run, "handle", "crash"))
    return checks


def crash_check(run: Run, grade_id: str, label: str) -> Check:
    """Run the student's ``handle`` cell as a consumer, SIGKILL it right after the first
    step (a land or a commit) of its second poll, restart it, and count what landed
    against what Kafka holds, and what the group committed."""
    from pipeline_lib.core.names import run_names

    name = "a SIGKILL between land and commit loses nothing"
    source = run.cell_source(grade_id)
    if source is None:
        return check(
            name,
            False,
            f"no cell with grade_id {grade_id!r}",
            "start again from the released notebook: its cells carry the ids the grader reads",
        )
    mine = run_names(run.settings, label)
    run.scratch.append(mine)
    ticks = kit.simulated_ticks(1_000, run.seed + 1)
    kit.send_ticks(mine, ticks)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as cell:
        cell.write(source)
    try:
        try:
            first = _victim(mine, cell.name, kill_at_poll=KILL_AT_POLL)
            second = _victim(mine, cell.name, kill_at_poll=0) if first.returncode < 0 else None
        except subprocess.TimeoutExpired:
            return check(
                name,
                False,
                f"your consumer ran past {VICTIM_TIMEOUT_S:.0f} s",
                "handle(records, out) must return after each poll",
            )
        if first.returncode != -signal.SIGKILL or second is None:
            said = (first.stderr or "").strip().splitlines()[-1:] or [
                "it took no step (land or commit) in its second poll"
            ]
            return check(
                name,
                False,
                f"your consumer did not reach the second step of its second poll: {said[0]}",
                "handle(records, out) must land and commit each poll; its cell runs on its "
                "own, so it may use only its arguments (a NameError says it does not)",
            )
        if second.returncode != 0:
            said = (second.stderr or "").strip().splitlines()[-1:] or ["no message"]
            return check(
                name,
                False,
                f"the restarted consumer failed: {said[0]}",
                "a consumer restarted after a crash reads its last poll again: handle "
                "must take records it has seen before",
            )
    finally:
        os.unlink(cell.name)
    ids = set(event_ids(ticks))
    table, objects = facts.table_ids(mine), facts.object_ids(mine)
    lost_table = len(ids - set(table))
    lost_objects = len(ids - set(objects)) if mine.keeps_raw_objects else 0
    twice = sum(n - 1 for i, n in table.items() if i in ids and n > 1)
    behind = facts.uncommitted(mine)
    said = (
        f"{len(ids):,} ticks in Kafka; after the kill and a restart {len(ids) - lost_table:,} "
        f"in BigQuery ({lost_table:,} lost, {twice:,} rows twice: read again)"
        + (f", {len(ids) - lost_objects:,} in GCS" if mine.keeps_raw_objects else "")
    )
    if lost_table or lost_objects:
        hint = (
            "a commit says 'done': commit only after out.land returned, so a crash in "
            "between means reading again (a duplicate), never losing"
        )
    else:
        said += (
            "; the group committed the whole topic"
            if behind == {}
            else (f"; uncommitted per partition: {behind}")
        )
        hint = "commit each poll once it is landed: without commits every restart reads all"
    return check(name, not lost_table and not lost_objects and behind == {}, said, hint)


VICTIM_TIMEOUT_S = 180.0


def _victim(settings: Settings, cell: str, kill_at_poll: int) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(
        [sys.executable, "-m", VICTIM, cell, str(kill_at_poll)],
        env=env,
        capture_output=True,
        text=True,
        timeout=VICTIM_TIMEOUT_S,
    )


# --- lab dead-letters ----------------------------------------------------------------


def dead_letters(run: Run) -> list[Check]:
    mix = kit.lab_mix(int(run.parameters["ticks"]), run.seed)
    settings = run.settings
    checks = landed(run, settings, mix.good_ids, "good ticks")
    table = facts.table_ids(settings)
    letters = facts.dead_letters(settings)
    lettered = {(d.partition, d.offset): d for d in letters}
    messages = facts.topic_messages(settings, route(settings).topic)
    by_id = {}
    for message in messages:
        fields = kit.tick_fields_or_none(message.value)
        if fields and fields.get("event_id") in mix.bad_print_ids:
            by_id[fields["event_id"]] = message
    in_table = [i for i in mix.bad_print_ids if i in table]
    kept = [
        m
        for m in by_id.values()
        if (m.partition, m.offset) in lettered
        and lettered[(m.partition, m.offset)].reason.strip()
        and lettered[(m.partition, m.offset)].key == m.key
    ]
    dropped = len(mix.bad_print_ids) - len(kept) - len(in_table)
    checks.append(
        check(
            "bad prints kept out of BigQuery",
            bool(by_id) and bool(table) and not in_table,
            f"{len(in_table)} of {len(mix.bad_print_ids)} bad prints in the table"
            if table
            else "nothing landed at all",
            "send a record that breaks the rule to out.dead_letter and do not land it",
        )
    )
    checks.append(
        check(
            "bad prints dead-lettered with key and reason",
            len(kept) == len(mix.bad_print_ids),
            f"{len(kept)} of {len(mix.bad_print_ids)} in {route(settings).dead_letter_topic}"
            + (f"; {dropped} neither landed nor dead-lettered (dropped)" if dropped > 0 else ""),
            "a dropped message is lost without a trace: call out.dead_letter(record, reason) "
            "with a reason that says which rule it broke",
        )
    )
    malformed = sum(1 for d in letters if d.stage == "decode")
    checks.append(
        check(
            "malformed messages dead-lettered",
            malformed >= mix.malformed,
            f"{malformed} of {mix.malformed} in the dead-letter topic",
            "run the lab's loop over the whole topic: kit.run_loop sends these itself",
        )
    )
    behind = facts.uncommitted(settings)
    checks.append(
        check(
            "every message committed",
            behind == {},
            "the group committed the whole topic"
            if behind == {}
            else f"uncommitted messages per partition: {behind or 'no topic'}",
            "commit after each poll's records are landed or dead-lettered",
        )
    )
    return checks


def cell_function(source: str, name: str) -> Callable[..., Any] | None:
    """``name`` as defined by a cell's source (run on its own), or None."""
    space: dict[str, Any] = {}
    try:
        exec(compile(source, f"<cell {name}>", "exec"), space)
    except (Exception, SystemExit):  # a cell that calls exit() must not stop the grader
        return None
    found = space.get(name)
    return found if callable(found) else None


# --- lab group ---------------------------------------------------------------------


def group(run: Run) -> list[Check]:
    ticks = run.ticks()
    settings = run.settings
    checks = landed(
        run,
        settings,
        event_ids(ticks),
        "the group",
        "let the producer finish and the last member run until it is idle (member.wait())",
    )
    behind = facts.uncommitted(settings)
    checks.append(
        check(
            "nothing left uncommitted",
            behind == {},
            "the group committed every partition to its end"
            if behind == {}
            else f"uncommitted per partition: {behind or 'no topic'}",
            "let the last member run until it is idle (member.wait()) before you stop",
        )
    )
    generations = facts.object_generations(settings)
    if not settings.keeps_raw_objects:
        checks.append(
            check(
                "the group changed while it landed",
                False,
                "GCS_TARGET=off: the raw objects, which record the group generation that "
                "wrote them, are what this check reads",
                "grade this lab with GCS on (local or cloud)",
            )
        )
        return checks
    checks.append(
        check(
            "the group changed while it landed",
            len(generations) >= 2,
            f"objects written in {len(generations)} group generation(s) {sorted(generations)}",
            "start the second member while the first is still landing, and let one leave "
            "mid-stream: each join and leave is a new generation",
        )
    )
    return checks


# --- lab contract --------------------------------------------------------------------

NEW_FIELDS = ("exchange", "bid")


def contract(run: Run) -> list[Check]:
    ticks = run.ticks()
    settings = run.settings
    checks = landed(
        run,
        settings,
        event_ids(ticks),
        "the newer producer",
        "a refused tick lands nowhere: read the dead letters' reasons",
    )
    letters = facts.dead_letters(settings)
    reasons = Counter(d.reason[:120] for d in letters)
    checks.append(
        check(
            "no dead letter",
            not letters,
            "none"
            if not letters
            else f"{len(letters)}: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(2)),
            "a minor version (1.x) only adds fields; a major one (2.0) or a retyped field is "
            "refused: keep every field of 1.0 as it is",
        )
    )
    columns = facts.table_columns(settings)
    missing = [c for c in NEW_FIELDS if c not in columns]
    filled = facts.non_null_counts(settings, list(NEW_FIELDS)) if not missing else {}
    empty = [c for c in NEW_FIELDS if filled.get(c, 0) < len(ticks)]
    checks.append(
        check(
            "the new fields are columns, filled",
            not missing and not empty,
            f"columns missing: {', '.join(missing)}"
            if missing
            else "; ".join(f"{c} on {filled[c]:,} of {len(ticks):,} rows" for c in NEW_FIELDS),
            "consume with PIPELINE_SCHEMA_UPDATES=add (settings.with_overrides("
            "schema_updates='add')) and send exchange and bid on every tick",
        )
    )
    return checks
