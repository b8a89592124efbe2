"""``python -m pipeline_lib class add | remove | rotate | status | feed``: a class on
one cluster (docs/classroom.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline_lib.core.config import Settings


def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_class_add(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.classroom.enrol import add_students
    from pipeline_lib.classroom.roster import read_roster

    students = read_roster(Path(args.roster))
    added = add_students(settings, students, Path(args.out), feed=args.feed, notify=_notify)
    print(
        f"{len(added.new)} student(s) added, {len(added.kept)} already in the class; "
        f"handouts (mode 0600, one per student) in {added.handouts}/"
    )
    for student in added.new:
        print(f"  added {student}: {added.handouts / (student + '.env')}")
    return 0


def cmd_class_remove(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.classroom.enrol import remove
    from pipeline_lib.core.errors import ConfigError

    if not args.student and not args.all:
        raise ConfigError("name the students to remove, or --all for the whole class")
    removed = remove(settings, None if args.all else args.student, purge=args.purge)
    what = "login, ACLs, handout" + (", topics, groups, dataset, bucket" if args.purge else "")
    print(f"removed {len(removed)} student(s) ({what}): {', '.join(removed)}")
    return 0


def cmd_class_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.classroom.enrol import rotate

    path = rotate(settings, args.student, Path(args.out) if args.out else None)
    print(f"new password for {args.student}; their new handout: {path}")
    return 0


def cmd_class_status(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline_lib.classroom.board import class_status, status_frame, status_json

    rows = class_status(settings)
    if args.json:
        print(json.dumps(status_json(rows), indent=2))
    else:
        print(status_frame(rows).drop(columns=["last_activity"]).to_string(na_rep="-"))
    return 0


def cmd_class_feed(settings: Settings, args: argparse.Namespace) -> int:
    """The teacher's live feed: the simulator into the feed topic at classroom pace."""
    from pipeline_lib.classroom.record import load_record
    from pipeline_lib.classroom.roster import FEED_TOPIC
    from pipeline_lib.kafka_io.producer import produce
    from pipeline_lib.sources import source_from_parameters

    record = load_record(settings.home)
    feed = record.feed if record else FEED_TOPIC
    source = source_from_parameters(settings, source="simulator", seed=args.seed)
    report = produce(
        settings.with_overrides(topic=feed, dead_letter_topic=f"{feed}.dlq"),
        source,
        duration=args.duration,
        max_records=args.max_records,
        speed=args.speed,
        progress=False,
    )
    print(report.summary())
    return 0 if report.ok else 1


def add_class_parser(commands: Any) -> None:
    from pipeline_lib.classroom.roster import FEED_TOPIC

    parser = commands.add_parser(
        "class", help="a class on one cluster: students, their handouts, the board, the feed"
    )
    actions = parser.add_subparsers(dest="class_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="logins, ACLs, topics, dataset and bucket for each student of a roster"
    )
    add.add_argument("roster", help="CSV with an `id` column (and `email` for real GCP)")
    add.add_argument("--out", required=True, help="folder for the handouts (<id>.env, ca.pem)")
    add.add_argument("--feed", default=FEED_TOPIC, help="the teacher's feed topic")
    add.set_defaults(func=cmd_class_add)
    remove = actions.add_parser("remove", help="take students out (login, ACLs, handout)")
    remove.add_argument("student", nargs="*", help="student ids")
    remove.add_argument("--all", action="store_true", help="the whole class")
    remove.add_argument(
        "--purge", action="store_true", help="delete their topics, groups, dataset and bucket too"
    )
    remove.set_defaults(func=cmd_class_remove)
    rotate = actions.add_parser("rotate", help="a new password for a student, a new handout")
    rotate.add_argument("student")
    rotate.add_argument("--out", default=None, help="folder for the handout (default: the last)")
    rotate.set_defaults(func=cmd_class_rotate)
    status = actions.add_parser("status", help="the instructor's board: one row per student")
    status.add_argument("--json", action="store_true", help="a JSON list, one object per student")
    status.set_defaults(func=cmd_class_status)
    feed = actions.add_parser("feed", help="produce the simulator into the class's feed")
    feed.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    feed.add_argument("--max-records", type=int, default=None, help="stop after N records")
    feed.add_argument("--speed", type=float, default=1.0, help="event seconds per wall second")
    feed.add_argument("--seed", type=int, default=None, help="simulator seed")
    feed.set_defaults(func=cmd_class_feed)
