"""Grading a lab: run the student's notebook headless on names of its own, then check
what it landed.

:func:`grade` runs the notebook with papermill (a seed of the grader's choosing, the
lab's run size) on a topic, group, bucket and dataset of its own
(:func:`pipeline_lib.core.names.run_names`), then runs the lab's checks against
Kafka, GCS and BigQuery through the official clients. A notebook that stops half
way is still checked: each check says what is missing. Afterwards the run's topics,
bucket and dataset are deleted (``keep=True`` leaves them to look at).

Results come as lines (one per check, a failure with its hint) or as Gradescope's
results JSON (``score``, ``tests`` with ``name``/``score``/``max_score``/``status``/
``output``), the format LMS autograders take.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from pipeline_lib.core.config import Settings
from pipeline_lib.core.names import run_names
from pipeline_lib.labs.catalog import Lab, find
from pipeline_lib.labs.checks import Check, Run, notebook_ran
from pipeline_lib.labs.kit import LabError
from pipeline_lib.ops.notebooks import NotebookFailed, start_notebook, wait_notebook
from pipeline_lib.records.routes import route


@dataclass
class Grade:
    """One notebook's grade: its checks, in order."""

    lab: Lab
    notebook: Path
    checks: list[Check]
    seconds: float
    executed: Path
    seed: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks if c.passed)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "not yet"
        return [
            *(c.line() for c in self.checks),
            f"lab {self.lab.name}: {self.score:g}/{self.max_score:g} checks, {verdict} "
            f"({self.seconds:.0f}s, seed {self.seed})",
        ]

    def gradescope(self) -> dict[str, Any]:
        """Gradescope's autograder results JSON for this notebook."""
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 1),
            "output": f"lab {self.lab.name} ({self.lab.title}), seed {self.seed}",
            "tests": [
                {
                    "name": c.name,
                    "score": c.points if c.passed else 0.0,
                    "max_score": c.points,
                    "status": "passed" if c.passed else "failed",
                    "output": c.line(),
                    "visibility": "visible",
                }
                for c in self.checks
            ],
        }


def first_error(executed: Path) -> str | None:
    """The executed notebook's first error, as ``cell N (its grade id): Name: message``."""
    try:
        notebook = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, 1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                where = f"code cell {number}" + (f" ({grade_id})" if grade_id else "")
                said = " ".join((output.get("evalue") or "").strip().splitlines()[:1])[:200]
                if output.get("ename") == "NotImplementedError" and not said:
                    said = "a part marked YOUR CODE HERE is still to write"
                return f"{where}: {output.get('ename')}" + (f": {said}" if said else "")
    return None


def grade(
    lab_name: str,
    notebook: Path,
    settings: Settings,
    output_dir: Path,
    *,
    seed: int | None = None,
    timeout: float = 300.0,
    keep: bool = False,
) -> Grade:
    """Run ``notebook`` as lab ``lab_name`` and check what it landed."""
    lab = find(lab_name)
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise LabError(f"no notebook at {notebook}")
    seed = seed if seed is not None else random.randint(1_000, 999_999)
    mine = run_names(settings, "lab")
    parameters = {**lab.size, "seed": seed, "graded": True}
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    started = time.monotonic()
    env = {**os.environ, **mine.to_env(), "PYTHONUNBUFFERED": "1"}
    error = None
    if lab.prepare is not None:
        lab.prepare(mine, parameters)
    try:
        wait_notebook(start_notebook(notebook, executed, parameters, env), executed, timeout)
    except NotebookFailed as failed:
        error = first_error(executed) or (str(failed).splitlines() or ["failed"])[0]
    run = Run(mine, executed, parameters, error)
    found = [notebook_ran(run)]
    try:
        found += lab.checks(run)
    except Exception as broken:  # the grader says what it could not read, and stops
        found.append(
            Check(
                "the grader could read what landed",
                False,
                f"{type(broken).__name__}: {(str(broken).splitlines() or [''])[0][:200]}",
                "ask your teacher: this is the grader's error, not your notebook's",
            )
        )
    finally:
        if not keep:
            for each in (mine, *run.scratch):
                clean_up(each)
    return Grade(lab, notebook, found, time.monotonic() - started, executed, seed)


def clean_up(settings: Settings) -> None:
    """Delete a graded run's topics, bucket and dataset (best effort: a class folder
    graded on one machine should not pile up)."""
    from pipeline_lib.clients.google import bigquery_client, storage_client
    from pipeline_lib.clients.kafka import kafka_admin

    to = route(settings)
    with contextlib.suppress(Exception):
        admin = kafka_admin(settings)
        try:
            existing = set(admin.list_topics())
            doomed = [t for t in (to.topic, to.dead_letter_topic) if t in existing]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()
    with contextlib.suppress(Exception):
        bigquery_client(settings).delete_dataset(
            f"{to.project}.{to.dataset}", delete_contents=True, not_found_ok=True
        )
    if settings.keeps_raw_objects:
        with contextlib.suppress(Exception):
            bucket = storage_client(settings).bucket(settings.gcs_bucket)
            for blob in bucket.list_blobs():
                blob.delete()
            bucket.delete()


def class_table(grades: dict[str, Grade]) -> list[str]:
    """One line per student: score, time, first failing check."""
    width = max([len(s) for s in grades] + [7])
    lines = [f"{'student':<{width}}  score  seconds  first failing check"]
    for student, graded in sorted(grades.items()):
        failing = next((c.name for c in graded.checks if not c.passed), "-")
        score = f"{graded.score:g}/{graded.max_score:g}"
        lines.append(f"{student:<{width}}  {score:>5}  {graded.seconds:7.0f}  {failing}")
    passed = sum(g.passed for g in grades.values())
    lines.append(f"{passed} of {len(grades)} passed")
    return lines


def submissions(folder: Path, lab: Lab) -> dict[str, Path]:
    """A class folder's notebooks, by student: ``<student>.ipynb``, or the lab's
    notebook anywhere inside ``<student>/`` (nbgrader's ``collect`` leaves
    ``submitted/<student>/<assignment>/<notebook>``: give it ``submitted/``)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".ipynb" and not path.name.startswith("."):
            found[path.stem] = path
        elif path.is_dir():
            inside = sorted(path.rglob(lab.notebook.name))
            if inside:
                found[path.name] = inside[0]
    if not found:
        raise LabError(
            f"no notebooks in {folder}: expected <student>.ipynb or "
            f"<student>/.../{lab.notebook.name}"
        )
    return found
