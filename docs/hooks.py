"""MkDocs hook: the tables generated from the code: the configuration page's variables
(from VARIABLES) and the teachers' page's labs (from the labs' catalog).

The table is built from the one declaration the package reads its environment by, so
the page cannot drift from the code: a variable added, renamed or re-documented there
shows up here at the next build. ``mkdocs.yml`` names this file under ``hooks:``;
``tests/unit/test_config.py`` calls :func:`on_page_markdown` directly to check that
every variable is listed, without building the site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mkdocs.exceptions import PluginError

from pipeline_lib.core.config import VARIABLES
from pipeline_lib.labs.catalog import LABS

PAGE = "configuration.md"
MARKER = "<!-- variables -->"
LABS_PAGE = "teaching.md"
LABS_MARKER = "<!-- labs -->"

_CODE_SPAN = re.compile(r"(`[^`]*`)")


def _cell(text: str) -> str:
    """Text that stays inside one table cell and shows as written: outside code spans,
    ``<name>`` would be read as an HTML tag and ``|`` would end the cell."""
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):  # even indexes lie outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return "".join(parts)


def _default(variable: Any) -> str:
    """A fixed default as code, none as "unset"; a default computed from the other
    values or the environment has no one value to print, and its text says how."""
    if callable(variable.default):
        return "derived"
    return f"`{variable.default}`" if variable.default else "unset"


def variables_table(variables: Iterable[Any] | None = None) -> str:
    """The markdown table of the variables, in the order the package reads them."""
    rows = [
        "| variable | default | what it is for |",
        "|----------|---------|----------------|",
    ]
    for variable in VARIABLES.values() if variables is None else variables:
        purpose = _cell(variable.doc)
        if variable.secret:
            purpose = (
                f"**Secret**: masked in every error and log, shown by `status` only as "
                f"set or unset. {purpose}"
            )
        rows.append(f"| `{variable.name}` | {_default(variable)} | {purpose} |")
    return "\n".join(rows) + "\n"


def graded_seconds() -> dict[str, float]:
    """Each lab's grading time in the committed bench results ({} without them)."""
    import json

    from pipeline_lib.core.config import PROJECT_ROOT

    try:
        results = json.loads((PROJECT_ROOT / "bench" / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    figure = next((f for f in results.get("figures", []) if f["name"] == "lab_grading"), {})
    return figure.get("seconds_by_lab", {})


def labs_table() -> str:
    """The markdown table of the labs: name, notebook, what it teaches, student time,
    and the grading time the committed bench results measured."""
    seconds = graded_seconds()
    rows = [
        "| lab | notebook | what it teaches | a student needs | grading took |",
        "|-----|----------|-----------------|-----------------|--------------|",
    ]
    for lab in LABS:
        took = f"{seconds[lab.name]:.0f} s" if lab.name in seconds else "not measured"
        page = f"labs/{lab.name}.md"
        rows.append(
            f"| [{lab.number}. {lab.title}]({page}) (`{lab.name}`) | "
            f"`{lab.notebook.name}` | {_cell(lab.teaches)} | "
            f"about {lab.student_minutes} min | {took} |"
        )
    return "\n".join(rows) + "\n"


TABLES = {PAGE: (MARKER, variables_table), LABS_PAGE: (LABS_MARKER, labs_table)}


def on_page_markdown(markdown: str, *, page: Any, **_: Any) -> str:
    """Put each generated table where its page's marker stands. A page without its
    marker stops the build rather than silently losing the table."""
    if page.file.src_uri not in TABLES:
        return markdown
    marker, table = TABLES[page.file.src_uri]
    if marker not in markdown:
        raise PluginError(
            f"docs/{page.file.src_uri} has lost its {marker} marker: the table goes there"
        )
    return markdown.replace(marker, table())
