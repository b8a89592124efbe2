"""Safe BigQuery SQL text: values always travel as query parameters.

The only things ever placed into SQL text are table identifiers, and only after
they pass :func:`table_ref`'s strict check (they come from configuration, never from
message data). Everything else is a ``@parameter``. One exception, on the local
emulator only: it adds a column to its storage through DDL alone, so the sink names a
new column there (a field of a newer record contract) after :func:`check_name`,
backquoted (``EmulatorQuirks.columns_added``); on real BigQuery columns are
added through the API, with no SQL. Patterns are matched against
the whole name (``fullmatch``), so not even a trailing newline slips through.
"""

from __future__ import annotations

from pipeline_lib.core.checks import check_name, check_project


def table_ref(project: str, dataset: str, table: str) -> str:
    """Backquoted ``project.dataset.table`` after validating each part."""
    check_project(project)
    check_name(dataset, "dataset")
    check_name(table, "table")
    return f"`{project}.{dataset}.{table}`"
