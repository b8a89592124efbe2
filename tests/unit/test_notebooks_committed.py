"""The committed notebooks: stripped, one literal `parameters` cell, logic in the package."""

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def test_the_notebooks_exist_in_run_order():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_setup",
        "02_producer",
        "03_consumer",
        "04_analysis",
        "05_fault_tolerance",
        "06_security",
        "07_schema_evolution",
        "08_instructor",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_typed_literals_with_help(path):
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(tagged[0].source)
    for statement in tree.body:
        assert isinstance(statement, ast.AnnAssign), "parameters are typed: name: type = value"
        ast.literal_eval(statement.value)  # literals only: computed values go below
        name = statement.target.id
        assert not any(word in name.lower() for word in SECRET_WORDS), (
            f"{name}: secrets come from the environment"
        )
    for line in tagged[0].source.splitlines():
        assert "#" in line, f"every parameter has a help comment: {line}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_definitions_in_notebooks(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
