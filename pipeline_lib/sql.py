"""Safe BigQuery SQL text: values always travel as query parameters.

The only things ever placed into SQL text are table identifiers, and only after
they pass :func:`table_ref`'s strict check (they come from configuration, never from
message data). Everything else is a ``@parameter``.
"""

from __future__ import annotations

import re

# Project ids: lower-case letters, digits and hyphens (local ids may be short).
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")


class UnsafeIdentifier(ValueError):
    """A project, dataset or table name that is not a plain BigQuery identifier."""


def table_ref(project: str, dataset: str, table: str) -> str:
    """Backquoted ``project.dataset.table`` after validating each part."""
    if not _PROJECT.match(project):
        raise UnsafeIdentifier(f"GCP project id {project!r} is not a valid project id")
    for kind, name in (("dataset", dataset), ("table", table)):
        if not _NAME.match(name):
            raise UnsafeIdentifier(
                f"BigQuery {kind} name {name!r} may hold only letters, digits and underscores"
            )
    return f"`{project}.{dataset}.{table}`"
