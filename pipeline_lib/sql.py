"""Safe BigQuery SQL text: values always travel as query parameters.

The only things ever placed into SQL text are table identifiers, and only after
they pass :func:`table_ref`'s strict check (they come from configuration, never from
message data). Everything else is a ``@parameter``. One exception, on the local
emulator only: it adds a column to its storage through DDL alone, so the sink names a
new column there (a field of a newer record contract) after :func:`check_name`,
backquoted (``BigQuerySink._alter_emulator_storage``); on real BigQuery columns are
added through the API, with no SQL. Patterns are matched against
the whole name (``fullmatch``), so not even a trailing newline slips through.
"""

from __future__ import annotations

import re

from pipeline_lib.errors import PipelineError

# Project ids: lower-case letters, digits and hyphens (local ids may be short).
PROJECT_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")


class UnsafeIdentifier(PipelineError, ValueError):
    """A project, dataset or table name that is not a plain BigQuery identifier."""


def check_project(project: str) -> str:
    if not PROJECT_PATTERN.fullmatch(project):
        raise UnsafeIdentifier(
            f"GCP project id {project!r} is not a valid project id "
            "(lower-case letters, digits and hyphens, starting with a letter)"
        )
    return project


def check_name(name: str, kind: str = "table") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UnsafeIdentifier(
            f"BigQuery {kind} name {name!r} may hold only letters, digits and underscores "
            "(not starting with a digit)"
        )
    return name


def table_ref(project: str, dataset: str, table: str) -> str:
    """Backquoted ``project.dataset.table`` after validating each part."""
    check_project(project)
    check_name(dataset, "dataset")
    check_name(table, "table")
    return f"`{project}.{dataset}.{table}`"
