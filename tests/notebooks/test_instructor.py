"""08_instructor run headless by papermill on a class of two on the secure broker: one
student has landed ticks, the other has not started; the board says so."""

from __future__ import annotations

import uuid

import nbformat

from pipeline_lib.classroom import enrol
from pipeline_lib.classroom.handout import read_handout
from pipeline_lib.classroom.record import load_record
from pipeline_lib.classroom.roster import Student
from pipeline_lib.cli.flow import INSTRUCTOR, run_notebook
from pipeline_lib.home import load_settings
from pipeline_lib.kafka_io.consume import consume
from pipeline_lib.kafka_io.producer import produce
from tests.helpers import simulated


def test_the_board_shows_who_landed_and_who_has_not_started(secure_kafka, tmp_path):
    token = uuid.uuid4().hex[:6]
    busy, quiet = f"busy-{token}", f"quiet-{token}"
    handouts = tmp_path / "handouts"
    enrol.add_students(secure_kafka, [Student(busy), Student(quiet)], handouts)
    try:
        env = {**read_handout(handouts / f"{busy}.env"), "PIPELINE_HOME": str(tmp_path / "s")}
        student = load_settings(env)
        produce(student, simulated(25, seed=808))
        consume(student, until_idle=2, duration=60)

        notebook, html = run_notebook(INSTRUCTOR, secure_kafka, {"live": False}, tmp_path)
        cells = nbformat.read(notebook, as_version=4).cells
        outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        table = next(
            o["data"]["text/html"]
            for o in outputs
            if "<table" in o.get("data", {}).get("text/html", "")
        )
        for student_id, state in ((busy, "idle"), (quiet, "not started")):
            row = table[table.index(f">{student_id}<") :].split("</tr>")[0]
            assert f">{state}<" in row, row
        busy_row = table[table.index(f">{busy}<") :].split("</tr>")[0]
        assert busy_row.count(">25<") >= 2  # produced and landed
        widget = [
            o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert widget  # the live board, displayed (not started: live=False)
        written = notebook.read_text() + html.read_text()
        for password in (s["password"] for s in load_record(secure_kafka.home).students.values()):
            assert password not in written
    finally:
        enrol.remove(secure_kafka, [busy, quiet], purge=True)
