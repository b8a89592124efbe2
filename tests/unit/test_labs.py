"""The labs without a broker: the catalog, the source notebooks' shape, the release,
the grade's formats, and the pure parts of the checks (the dead-letter lab's mix,
the bars' reference)."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.cli import main
from pipeline_lib.labs import bars, kit
from pipeline_lib.labs.catalog import LABS, LABS_DIR, find
from pipeline_lib.labs.checks import Check, Run
from pipeline_lib.labs.grade import Grade, class_table, first_error, submissions
from pipeline_lib.labs.kit import LabError
from pipeline_lib.labs.release import student_version
from pipeline_lib.records.schema import InvalidRecord, Tick
from pipeline_lib.records.streams import TICKS

SOURCES = [lab.notebook for lab in LABS]


def solution_cells(notebook) -> list:
    return [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]


def test_at_least_six_labs_each_with_its_notebook_and_checks():
    assert len(LABS) >= 6
    assert len({lab.name for lab in LABS}) == len(LABS)
    assert sorted(LABS_DIR.glob("*.ipynb")) == sorted(SOURCES)
    for lab in LABS:
        assert callable(lab.checks) and lab.teaches and lab.student_minutes > 0


def test_a_lab_is_found_by_name_number_or_notebook_and_a_wrong_name_lists_them():
    assert find("commit") is find("2") is find("lab2") is find("lab2_commit")
    with pytest.raises(LabError, match="the labs are keys, commit"):
        find("kafka")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_source_notebook_committed_without_outputs_with_seed_and_size_parameters(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {s.target.id for s in ast.parse(tagged[0].source).body}
    lab = next(lab for lab in LABS if lab.notebook == path)
    assert {"seed", "graded", *lab.size} <= names  # the grader sets them


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_only_solution_cells_define_things_and_each_holds_a_solution_region(path):
    """Thin like the other notebooks: the student's code is the only code written here."""
    notebook = nbformat.read(path, as_version=4)
    solutions = solution_cells(notebook)
    assert solutions
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell in solutions:
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            assert cell.metadata.nbgrader.grade_id
            continue
        assert "SOLUTION" not in cell.source
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_release_replaces_each_solution_by_the_stub_and_keeps_everything_else(path):
    source = nbformat.read(path, as_version=4)
    released = student_version(path)
    assert len(released.cells) == len(source.cells)
    for before, after in zip(source.cells, released.cells, strict=True):
        if before in solution_cells(source):
            assert "SOLUTION" not in after.source
            stub = [line.strip() for line in after.source.splitlines()]
            assert "# YOUR CODE HERE" in stub and "raise NotImplementedError()" in stub
            inside = before.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in inside.strip().splitlines():
                assert line.strip() not in after.source.splitlines()
        else:
            assert after.source == before.source


def test_release_writes_every_lab_through_the_command(tmp_path, capsys):
    assert main(["lab", "release", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in SOURCES)
    assert main(["lab", "release", str(tmp_path / "one"), "--lab", "bars"]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["lab4_bars.ipynb"]


def test_lab_list_shows_every_lab(capsys):
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    for lab in LABS:
        assert lab.name in out and lab.title in out


def grade_of(*passed: bool) -> Grade:
    checks = [Check(f"check {i}", p, "found", "do this") for i, p in enumerate(passed)]
    return Grade(LABS[0], Path("n.ipynb"), checks, 12.3, Path("out/n.ipynb"), 7)


def test_a_grade_as_lines_and_as_gradescope_json():
    graded = grade_of(True, False)
    assert not graded.passed and graded.score == 1 and graded.max_score == 2
    assert graded.lines()[:2] == [
        "PASS check 0: found.",
        "FAIL check 1: found. Hint: do this",
    ]
    assert graded.lines()[-1].startswith("lab keys: 1/2 checks, not yet")
    document = json.loads(json.dumps(graded.gradescope()))
    assert document["score"] == 1 and document["execution_time"] == 12.3
    assert [t["status"] for t in document["tests"]] == ["passed", "failed"]
    assert all(
        {"name", "score", "max_score", "output", "visibility"} <= set(t) for t in document["tests"]
    )


def test_a_class_table_gives_one_line_per_student_and_the_first_failing_check():
    table = class_table({"s02": grade_of(True, False), "s01": grade_of(True, True)})
    assert table[1].split()[:2] == ["s01", "2/2"] and table[1].endswith("-")
    assert table[2].split()[:2] == ["s02", "1/2"] and table[2].endswith("check 1")
    assert table[-1] == "1 of 2 passed"


def test_a_class_folder_holds_flat_notebooks_or_nbgrader_collect_folders(tmp_path):
    lab = find("keys")
    (tmp_path / "ana.ipynb").write_text("{}")
    (tmp_path / "bo" / "lab1").mkdir(parents=True)  # nbgrader's collect: <student>/<lab>/
    (tmp_path / "bo" / "lab1" / lab.notebook.name).write_text("{}")
    (tmp_path / "notes").mkdir()
    assert set(submissions(tmp_path, lab)) == {"ana", "bo"}
    with pytest.raises(LabError, match="no notebooks"):
        submissions(tmp_path / "notes", lab)


def test_the_first_error_names_the_cell_and_what_is_left_to_write(tmp_path):
    notebook = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("x = 1")
    stub = nbformat.v4.new_code_cell("raise NotImplementedError()")
    stub.metadata["nbgrader"] = {"grade_id": "key_for", "solution": True}
    stub.outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="")]
    notebook.cells = [ok, stub]
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    assert first_error(path) == (
        "code cell 2 (key_for): NotImplementedError: a part marked YOUR CODE HERE is still to write"
    )


def test_answers_and_cells_are_read_back_from_the_executed_notebook(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def handle(records, out):\n    pass")
    cell.metadata["nbgrader"] = {"grade_id": "handle", "solution": True}
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={kit.ANSWER_MIME: {"name": "partitions", "value": {"A": 1}}}
        )
    ]
    notebook.cells = [cell]
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    run = Run(None, path, {"seed": 1, "ticks": 3})  # type: ignore[arg-type]
    assert run.answers() == {"partitions": {"A": 1}}
    assert run.cell_source("handle").startswith("def handle")
    assert run.cell_source("missing") is None


def test_the_dead_letter_mix_is_the_same_for_a_seed_and_holds_what_it_says():
    mix = kit.lab_mix(120, 5)
    assert mix == kit.lab_mix(120, 5) and mix != kit.lab_mix(120, 6)
    assert len(mix.bad_print_ids) == kit.BAD_PRINTS and len(mix.good_ids) == 120 - kit.BAD_PRINTS
    decoded = []
    for _key, value in mix.messages[:120]:
        tick = TICKS.decode(value)  # valid under the contract, bad prints included
        decoded.append(tick)
    bad = [t for t in decoded if t.event_id in mix.bad_print_ids]
    assert all((t.high - t.low) / t.low > 0.10 for t in bad)
    assert all((t.high - t.low) / t.low < 0.10 for t in decoded if t not in bad)
    for _key, value in mix.messages[120:]:
        with pytest.raises(InvalidRecord):
            TICKS.decode(value)
    assert mix.malformed == len(mix.messages) - 120


def tick(second: int, close: float, volume: int, symbol: str = "AAPL") -> Tick:
    ts = datetime(2024, 3, 5, 14, 30, tzinfo=UTC) + timedelta(seconds=second)
    return Tick(
        f"sim:{symbol}:{second}", symbol, ts, close, close + 1, close - 1, close, volume, "sim"
    )


def test_decoys_copy_every_seventh_tick_of_one_symbol_under_another():
    ticks = kit.simulated_ticks(100, 3)
    symbol, decoys = bars.decoyed(ticks)
    own = [t for t in ticks if t.symbol == symbol]
    assert [d.event_id for d in decoys] == [t.event_id for t in own[:: bars.DECOY_EVERY]]
    assert {d.symbol for d in decoys} == {bars.DECOY_SYMBOL} != {symbol}
    for decoy in decoys:
        TICKS.decode(TICKS.encode(decoy))  # a valid tick: only its symbol says it is not


def test_the_reference_bars_are_first_open_max_high_min_low_last_close_and_vwap():
    ticks = [tick(59, 11, 10), tick(0, 10, 30), tick(61, 20, 5), tick(5, 12, 1, "MSFT")]
    frame = bars.reference_bars(ticks, "AAPL")
    assert list(frame.columns) == bars.COLUMNS
    first, second = frame.to_dict("records")
    assert (first["open"], first["high"], first["low"], first["close"]) == (10, 12, 9, 11)
    assert first["volume"] == 40 and first["vwap"] == pytest.approx((10 * 30 + 11 * 10) / 40)
    assert second["volume"] == 5 and second["vwap"] == 20
