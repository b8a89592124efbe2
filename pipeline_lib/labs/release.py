"""Student versions of the labs: solutions out, everything else kept.

The source notebooks follow **nbgrader**'s convention (a solution between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` in a cell whose ``nbgrader`` metadata marks it a
solution cell), and the release runs nbgrader's own ``ClearSolutions`` and
``ClearOutput`` preprocessors on them: a teacher who runs nbgrader on JupyterHub can
take the same source notebooks into ``nbgrader generate_assignment``, and a teacher
who does not needs nothing but this command. The grading is ours
(:mod:`pipeline_lib.labs.grade`): nbgrader's tests check values in the kernel, ours
check what landed in Kafka, GCS and BigQuery.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from pipeline_lib.labs.catalog import LABS, Lab
from pipeline_lib.labs.kit import LabError


def student_version(source: Path) -> nbformat.NotebookNode:
    """``source`` with every solution region replaced by nbgrader's stub and no output."""
    try:
        from nbgrader.preprocessors import ClearOutput, ClearSolutions
    except ImportError:
        raise LabError(
            "releasing labs needs nbgrader: pip install -e '.[teach]' (make install has it)"
        ) from None
    notebook = nbformat.read(source, as_version=4)
    resources: dict = {}
    for preprocessor in (ClearSolutions(), ClearOutput()):
        notebook, resources = preprocessor.preprocess(notebook, resources)
    return notebook


def release(directory: Path, labs: tuple[Lab, ...] = LABS) -> list[Path]:
    """Write the student version of each lab into ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for lab in labs:
        target = directory / lab.notebook.name
        nbformat.write(student_version(lab.notebook), target)
        written.append(target)
    return written
