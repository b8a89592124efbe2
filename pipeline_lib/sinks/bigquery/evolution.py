"""Fields of a newer contract in BigQuery: the ``extra`` JSON column, or columns of
their own (``PIPELINE_SCHEMA_UPDATES``), and the one rule that refuses a record.

The consumer's tolerant reader keeps the fields a record carries that its contract
does not know (:mod:`pipeline_lib.records.contract`). In BigQuery they go:

* ``json`` (the default): into the ``extra`` column, a JSON object as text. Nothing
  about the table changes, so it needs no right beyond writing rows, a producer's
  typo costs no column for ever, and every field is still there to query
  (``JSON_VALUE(extra, '$.exchange')``) or to promote later.
* ``add``: a new field whose values are a string, a whole number, a number or a
  boolean becomes a NULLABLE column (STRING, INT64, FLOAT64, BOOL, from its first
  value) before the batch that first carries it is written, by either writer. Other
  fields (objects, lists, names BigQuery cannot take, past :data:`MAX_ADDED_COLUMNS`)
  stay in ``extra``. Needs the right to update the table (``bigquery.tables.update``).

Whatever the policy, a column that exists is filled by name, and a value that does
not fit its column's type is a type change: the record is refused (a dead letter
with one line naming the field, both types and what to do); the rest of the batch
lands. A field keeps its type: a new type is a new field name, or a new major
version of the contract.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline_lib.records.batches import Batch, DeadLetter
from pipeline_lib.sinks.bigquery.type_mapper import TYPES

MAX_ADDED_COLUMNS = 50
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_RESERVED = ("_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colon_")
_INT64 = (-(2**63), 2**63 - 1)
_JSON_SCALARS = (bool, int, float, str)  # a JSON value that is not an object, list or null


def column_type(value: Any) -> str | None:
    """The BigQuery type a new column gets from a value, or None (stays in ``extra``):
    the type mapper's for the value's Python type, if BigQuery can hold the value."""
    if type(value) not in _JSON_SCALARS:
        return None
    kind = TYPES.for_python(type(value))
    if kind == "INT64" and not _INT64[0] <= value <= _INT64[1]:
        return None
    if kind == "FLOAT64" and not math.isfinite(value):
        return None
    return kind


def fits(value: Any, kind: str) -> bool:
    """Whether a value can go into a column of type ``kind`` (null always can)."""
    if value is None:
        return True
    found = column_type(value)
    return found == kind or (kind == "FLOAT64" and found == "INT64")


def _described(value: Any) -> str:
    found = column_type(value) or type(value).__name__.replace("dict", "object")
    return f"{found} {orjson.dumps(value)[:40].decode('utf-8', 'replace')}"


def addable(name: str) -> bool:
    """Whether BigQuery takes ``name`` as a column name."""
    return bool(_NAME.fullmatch(name)) and not name.lower().startswith(_RESERVED)


@dataclass
class Plan:
    """What a batch's extra fields need: columns to add, records to refuse."""

    new_columns: list[tuple[str, str]] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)
    keep: list[list[int]] = field(default_factory=list)  # per part: the rows to write


def plan(
    batch: Batch,
    added: dict[str, tuple[str, str]],
    reserved: frozenset[str],
    add: bool,
    table: str,
    sink: str,
) -> Plan:
    """Plan a batch's extra fields against the columns ``added`` to the table for
    earlier ones (lower-cased name → (name, type): BigQuery's names ignore case),
    under the policy (``add``: add columns). A field named like one of the stream's
    own columns (``reserved``, lower-cased: ``ingested_at``, ``extra``...) stays in
    ``extra``. Run it again after adding the columns it plans: the values are then
    checked against them (two records of one batch may disagree on a type)."""
    out = Plan()
    planned: dict[str, tuple[str, str]] = {}
    for part in batch.parts:
        keep = []
        for i in range(len(part)):
            extras = part.extras[i] if part.extras else None
            reason = None
            for name, value in (extras or {}).items():
                key = name.lower()
                if key in reserved:
                    continue
                column = added.get(key) or planned.get(key)
                if column is not None:
                    if column[0] == name and not fits(value, column[1]):
                        reason = (
                            f"field {name!r} is {column[1]} in {table}, this record has "
                            f"{_described(value)}: a field keeps its type. Send the new "
                            "type under a new field name, or as a new major version of "
                            "the contract on a topic of its own"
                        )
                        break
                    continue
                kind = column_type(value)
                if add and kind and addable(name) and len(added) + len(planned) < MAX_ADDED_COLUMNS:
                    planned[key] = (name, kind)
            if reason is None:
                keep.append(i)
            else:
                out.refused.append(part.letter(i, reason, sink))
        out.keep.append(keep)
    out.new_columns = list(planned.values())
    return out


def split(
    extras: dict[str, Any] | None, added: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    """A record's extras as (values of the added columns, the rest as ``extra`` JSON)."""
    if not extras:
        return {}, None
    into = {name: value for name, value in extras.items() if name in added}
    rest = {name: value for name, value in extras.items() if name not in added}
    return into, (orjson.dumps(rest).decode() if rest else None)
