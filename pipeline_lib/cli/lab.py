"""``python -m pipeline_lib lab list | release DIR | grade LAB NOTEBOOK|FOLDER``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline_lib.core.config import Settings


def cmd_lab_list(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.labs.catalog import LABS

    for lab in LABS:
        print(f"{lab.name:<13} lab{lab.number}  ~{lab.student_minutes} min  {lab.title}")
        print(f"{'':<13} {lab.teaches}")
    return 0


def cmd_lab_release(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.labs.catalog import LABS, find
    from pipeline_lib.labs.release import release

    labs = tuple(find(name) for name in args.lab) if args.lab else LABS
    for path in release(Path(args.directory), labs):
        print(f"released {path}")
    return 0


def cmd_lab_grade(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from pipeline_lib.cli.flow import OUTPUT_DIR
    from pipeline_lib.labs.catalog import find
    from pipeline_lib.labs.grade import class_table, grade, submissions

    lab = find(args.lab)
    target = Path(args.notebook)
    out = (
        Path(args.output)
        if args.output
        else OUTPUT_DIR / datetime.now().strftime("grade-%Y%m%d-%H%M%S")
    )
    options: dict[str, Any] = {"seed": args.seed, "keep": args.keep, "timeout": args.timeout}
    if target.is_dir():
        grades = {}
        for student, notebook in submissions(target, lab).items():
            try:
                grades[student] = grade(lab.name, notebook, settings, out / student, **options)
            except Exception as error:  # one student's run must not stop the class's
                grades[student] = not_graded(lab, notebook, error)
            if not args.json:
                print(f"{student}: {grades[student].lines()[-1]}", flush=True)
        if args.json:
            print(json.dumps({s: g.gradescope() for s, g in grades.items()}, indent=2))
        else:
            print("\n".join(class_table(grades)))
        return 0 if all(g.passed for g in grades.values()) else 1
    graded = grade(lab.name, target, settings, out, **options)
    print(json.dumps(graded.gradescope(), indent=2) if args.json else "\n".join(graded.lines()))
    return 0 if graded.passed else 1


def not_graded(lab: Any, notebook: Path, error: Exception) -> Any:
    """A grade of nothing for a notebook the grader could not run, saying why."""
    from pipeline_lib.labs.checks import Check
    from pipeline_lib.labs.grade import Grade

    said = (str(error).splitlines() or [""])[0][:200]
    check = Check(
        "the grader could run this notebook",
        False,
        f"{type(error).__name__}: {said}",
        "the teacher's services or settings, not the notebook: check them and grade again",
    )
    return Grade(lab, notebook, [check], 0.0, notebook, 0)


def add_lab_parser(commands: Any) -> None:
    lab = commands.add_parser("lab", help="labs: list them, release student versions, grade")
    labs = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    listing = labs.add_parser("list", help="the labs, what each teaches, about how long")
    listing.set_defaults(func=cmd_lab_list)
    release = labs.add_parser(
        "release", help="write student versions (solutions removed) into DIRECTORY"
    )
    release.add_argument("directory")
    release.add_argument("--lab", action="append", help="only this lab (repeatable)")
    release.set_defaults(func=cmd_lab_release)
    grade = labs.add_parser(
        "grade",
        help="run a notebook headless on names of its own, then check what it landed "
        "(exit 0 only when every check passes)",
    )
    grade.add_argument("lab", help="the lab's name or number (lab list)")
    grade.add_argument(
        "notebook", help="the notebook, or a class folder (<student>.ipynb or <student>/)"
    )
    grade.add_argument("--json", action="store_true", help="Gradescope's results JSON")
    grade.add_argument("--seed", type=int, default=None, help="the run's seed (default: random)")
    grade.add_argument(
        "--keep", action="store_true", help="keep the run's topics, bucket and dataset"
    )
    grade.add_argument("--timeout", type=float, default=300.0, help="seconds per notebook")
    grade.add_argument(
        "--output", default=None, help="folder for executed notebooks (default: output/grade-…)"
    )
    grade.set_defaults(func=cmd_lab_grade)
