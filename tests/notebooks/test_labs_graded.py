"""Every lab graded on the local services: the source notebook (with its solutions)
passes; the released starter, unchanged, fails with the expected lines; the wrong
solutions students write fail the check that names their mistake; a class folder
grades as one table. Each notebook is graded once per test session (module fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.labs.catalog import LABS, find
from pipeline_lib.labs.grade import Grade, grade
from pipeline_lib.labs.release import release

# The mistakes the labs are about, as a student writes them: (lab, cell, new body).
WRONG = {
    "commit before write": ("commit", "handle", "out.commit()\nout.land(records)"),
    "never commit": ("commit", "handle", "out.land(records)"),
    "drop instead of dead-letter": (
        "dead-letters",
        "handle",
        "out.land([r for r in records if not bad_print(r.tick)])\nout.commit()",
    ),
    "the view, unfiltered": (
        "bars",
        "bars_sql",
        'return f"""\n'
        "    SELECT TIMESTAMP_TRUNC(ts, MINUTE) AS minute,\n"
        "      ARRAY_AGG(open ORDER BY ts LIMIT 1)[OFFSET(0)] AS open, MAX(high) AS high,\n"
        "      MIN(low) AS low, ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS close,\n"
        "      SUM(volume) AS volume, SUM(close * volume) / SUM(volume) AS vwap\n"
        "    FROM {view} WHERE symbol = @symbol GROUP BY minute ORDER BY minute\n"
        '"""',
    ),
    "de-duplicate everything, then filter": (
        "bars",
        "bars_sql",
        'return f"""\n'
        "    WITH once AS (SELECT * FROM {raw}\n"
        "      QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingested_at) = 1)\n"
        "    SELECT TIMESTAMP_TRUNC(ts, MINUTE) AS minute,\n"
        "      ARRAY_AGG(open ORDER BY ts LIMIT 1)[OFFSET(0)] AS open, MAX(high) AS high,\n"
        "      MIN(low) AS low, ARRAY_AGG(close ORDER BY ts DESC LIMIT 1)[OFFSET(0)] AS close,\n"
        "      SUM(volume) AS volume, SUM(close * volume) / SUM(volume) AS vwap\n"
        "    FROM once WHERE symbol = @symbol GROUP BY minute ORDER BY minute\n"
        '"""',
    ),
    "no key": ("keys", "key_for", "return None"),
}


# What each lab's student code is for: the checks a starter must fail.
STUDENT_WORK = {
    "keys": ["each symbol in one partition", "partitions predicted"],
    "commit": ["a SIGKILL between land and commit loses nothing"],
    "dead-letters": ["bad prints dead-lettered with key and reason"],
    "bars": [
        "your query reads the raw table, not the view",
        "your query filters by symbol before de-duplicating",
        "your bars equal the reference",
    ],
    "group": ["the group changed while it landed"],
    "contract": ["the new fields are columns, filled"],
}


def with_solution(source: Path, grade_id: str, body: str, target: Path) -> Path:
    """``source`` with the solution region of cell ``grade_id`` replaced by ``body``."""
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") != grade_id:
            continue
        lines, inside = [], False
        for line in cell.source.split("\n"):
            if "### BEGIN SOLUTION" in line:
                inside, indent = True, line[: len(line) - len(line.lstrip())]
                lines += [indent + new for new in body.split("\n")]
            elif "### END SOLUTION" in line:
                inside = False
            elif not inside:
                lines.append(line)
        cell.source = "\n".join(lines)
    nbformat.write(notebook, target)
    return target


def without_cell(source: Path, starting: str, target: Path) -> Path:
    """``source`` without the code cell whose source starts with ``starting``."""
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [c for c in notebook.cells if not c.source.startswith(starting)]
    nbformat.write(notebook, target)
    return target


@pytest.fixture(scope="module")
def graded(services, tmp_path_factory) -> dict[str, Grade]:
    """Every lab's source and released starter, and each wrong solution, graded once."""
    root = tmp_path_factory.mktemp("labs")
    starters = release(root / "release")
    grades: dict[str, Grade] = {}
    for lab, starter in zip(LABS, starters, strict=True):
        grades[f"{lab.name} source"] = grade(lab.name, lab.notebook, services, root / lab.name)
        grades[f"{lab.name} starter"] = grade(lab.name, starter, services, root / "s" / lab.name)
    for mistake, (name, grade_id, body) in WRONG.items():
        source = find(name).notebook
        wrong = with_solution(source, grade_id, body, root / f"{name}-wrong.ipynb")
        grades[mistake] = grade(name, wrong, services, root / "wrong" / name)
    # printing the right answer without sending anything
    silent = without_cell(find("keys").notebook, "sent = ", root / "keys-silent.ipynb")
    grades["answers without landing"] = grade("keys", silent, services, root / "silent")
    return grades


def failing(graded: Grade) -> list[str]:
    return [c.name for c in graded.checks if not c.passed]


@pytest.mark.parametrize("lab", [lab.name for lab in LABS])
def test_the_source_notebook_passes_its_grader(graded, lab):
    result = graded[f"{lab} source"]
    assert result.passed, "\n".join(result.lines())
    assert len(result.checks) >= 4


@pytest.mark.parametrize("lab", [lab.name for lab in LABS])
def test_the_released_starter_fails_at_the_first_part_to_write(graded, lab):
    result = graded[f"{lab} starter"]
    assert not result.passed
    ran = result.checks[0]
    assert ran.name == "the notebook runs to the end" and not ran.passed
    assert "NotImplementedError: a part marked YOUR CODE HERE is still to write" in ran.detail
    assert "Hint: fill in every part marked YOUR CODE HERE" in ran.line()
    assert set(STUDENT_WORK[lab]) <= set(failing(result)), "\n".join(result.lines())
    assert all(c.hint for c in result.checks if not c.passed)


def test_commit_before_write_loses_ticks_at_the_sigkill(graded):
    result = graded["commit before write"]
    assert failing(result) == ["a SIGKILL between land and commit loses nothing"]
    assert " lost, " in result.checks[-1].detail and "(0 lost" not in result.checks[-1].detail
    assert "commit only after out.land returned" in result.checks[-1].line()


def test_commit_after_write_reads_again_and_loses_nothing(graded):
    crash = graded["commit source"].checks[-1]
    assert crash.passed and "(0 lost, " in crash.detail


def test_dropping_bad_prints_instead_of_dead_lettering_them_fails_that_check(graded):
    result = graded["drop instead of dead-letter"]
    assert failing(result) == ["bad prints dead-lettered with key and reason"]
    assert "neither landed nor dead-lettered (dropped)" in result.checks[-3].detail


def test_bars_from_the_unfiltered_view_are_right_but_read_everything(graded):
    result = graded["the view, unfiltered"]
    assert failing(result) == [
        "your query reads the raw table, not the view",
        "your query filters by symbol before de-duplicating",
    ]
    assert "_dedup view" in result.checks[-3].detail


def test_bars_de_duplicated_before_the_filter_miss_the_decoyed_events(graded):
    result = graded["de-duplicate everything, then filter"]
    assert failing(result) == ["your query filters by symbol before de-duplicating"]
    assert "have a first copy under ZZZZ" in result.checks[-2].detail


def test_a_consumer_that_never_commits_fails_the_crash_check(graded):
    crash = graded["never commit"].checks[-1]
    assert not crash.passed and "(0 lost" in crash.detail and "uncommitted" in crash.detail
    assert "without commits every restart reads all" in crash.line()


def test_ticks_without_keys_spread_over_partitions(graded):
    result = graded["no key"]
    assert failing(result) == [
        "each symbol in one partition",
        "each symbol's ticks read in event order",
        "partitions predicted",
    ]


def test_answers_printed_without_landing_fail(graded):
    result = graded["answers without landing"]
    assert failing(result) == [
        "every tick in the topic",
        "each symbol in one partition",
        "each symbol's ticks read in event order",
        "partitions predicted",
    ]


def test_a_class_folder_grades_as_one_table_and_as_gradescope_json(services, tmp_path):
    """Through the command a teacher types: two students, one done, one not."""
    lab = find("keys")
    folder = tmp_path / "class"
    (folder / "ada").mkdir(parents=True)
    nbformat.write(nbformat.read(lab.notebook, as_version=4), folder / "ada" / lab.notebook.name)
    release(folder / "ben", (lab,))
    env = {**os.environ, **services.to_env()}
    command = [sys.executable, "-m", "pipeline_lib", "lab", "grade", "keys", str(folder)]
    out = tmp_path / "out"
    table = subprocess.run(
        [*command, "--output", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert table.returncode == 1, table.stderr
    rows = table.stdout.splitlines()
    assert rows[-1] == "1 of 2 passed"
    assert rows[-3].split()[:2] == ["ada", "5/5"] and rows[-2].split()[:2] == ["ben", "0/5"]
    document = subprocess.run(
        [*command, "--json", "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = json.loads(document.stdout)
    assert results["ada"]["score"] == 5 and results["ben"]["score"] == 0
    assert {t["status"] for t in results["ben"]["tests"]} == {"failed"}


def test_a_lab_grades_the_same_on_a_secure_home(secure_kafka, tmp_path):
    """TLS, a SCRAM login and ACLs: the notebook's kernel, the student's loop, the
    dead letters and the grader's reads all go through them."""
    result = grade("dead-letters", find("dead-letters").notebook, secure_kafka, tmp_path)
    assert result.passed, "\n".join(result.lines())
