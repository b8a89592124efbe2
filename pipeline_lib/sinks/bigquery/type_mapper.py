"""BigQuery's types both ways, built from the one type table (``records.schema.KINDS``).

A column's type has four spellings here: the field's kind (``count``), BigQuery's
standard SQL name (``INT64``: tables, DDL, query parameters), its legacy name
(``INTEGER``: what the API answers for a table's columns, whatever name made them)
and an Arrow type (Parquet for load jobs, record batches for the Storage Write API).
Each mapping used to be written out where it was needed; one class built from KINDS
types a new kind everywhere at once (dlt's ``BigQueryTypeMapper`` is the model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline_lib.records.schema import KINDS, Field, Kind

# BigQuery's legacy names of the standard ones that differ (the API answers these).
LEGACY_NAMES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}

Column = tuple[str, str, str, str]  # (name, BigQuery type, mode, description)


class BigQueryTypeMapper:
    """Kinds to BigQuery and Arrow types, and BigQuery types (either name) back.

    Two kinds may share a BigQuery type (``price`` and ``score`` are FLOAT64) only
    with the same Python and Arrow types: a BigQuery type then maps back to one
    :class:`~pipeline_lib.records.schema.Kind`.
    """

    def __init__(self, kinds: Mapping[str, Kind] = KINDS) -> None:
        self.kinds: dict[str, Kind] = dict(kinds)
        self._by_type: dict[str, Kind] = {}  # standard name -> its kind's types
        self._by_python: dict[type, str] = {}  # Python type -> standard name
        for name, kind in self.kinds.items():
            if self._by_type.setdefault(kind.bigquery, kind) != kind:
                raise ValueError(f"kind {name!r}: {kind.bigquery} is typed two ways")
            if self._by_python.setdefault(kind.python, kind.bigquery) != kind.bigquery:
                raise ValueError(f"kind {name!r}: {kind.python.__name__} has two BigQuery types")
        self._standard = {LEGACY_NAMES.get(t, t): t for t in self._by_type}
        self._standard.update({t: t for t in self._by_type})

    # --- kinds and BigQuery's names -------------------------------------------------

    @property
    def bigquery_types(self) -> frozenset[str]:
        """Every BigQuery type the pipeline writes, by its standard name."""
        return frozenset(self._by_type)

    def to_bigquery(self, kind: str) -> str:
        """A kind's BigQuery type, by its standard SQL name."""
        return self.kinds[kind].bigquery

    def from_bigquery(self, name: str) -> Kind:
        """The types of a BigQuery type given by either name (KeyError if unknown)."""
        return self._by_type[self._standard[name.upper()]]

    def standard(self, name: str) -> str:
        """A BigQuery type by its standard SQL name; a name not ours is left as it is."""
        return self._standard.get(name, name)

    def legacy(self, name: str) -> str:
        """A BigQuery type by its legacy SQL name (as the API answers it)."""
        standard = self.standard(name)
        return LEGACY_NAMES.get(standard, standard)

    def same(self, one: str, other: str) -> bool:
        """Whether two names (standard or legacy) are one BigQuery type."""
        return self.standard(one) == self.standard(other)

    def for_python(self, kind: type) -> str | None:
        """The BigQuery type of values of exactly this Python type, or None."""
        return self._by_python.get(kind)

    # --- Arrow ------------------------------------------------------------------------

    def arrow_type(self, kind: str) -> Any:
        """A kind's Arrow type ("timestamp" is µs in UTC, as records.schema.arrow_type)."""
        return self._arrow(self.kinds[kind])

    def to_arrow(self, name: str) -> Any:
        """The Arrow type of a BigQuery column of type ``name`` (either name)."""
        return self._arrow(self.from_bigquery(name))

    def from_arrow(self, arrow: Any) -> str:
        """The BigQuery type (standard name) of an Arrow type the pipeline writes."""
        for standard, kind in self._by_type.items():
            if self._arrow(kind) == arrow:
                return standard
        raise KeyError(f"no BigQuery type for Arrow {arrow}")

    @staticmethod
    def _arrow(kind: Kind) -> Any:
        import pyarrow as pa

        if kind.arrow == "timestamp":
            return pa.timestamp("us", tz="UTC")
        return pa.type_for_alias(kind.arrow)

    # --- the client's objects ---------------------------------------------------------

    def columns(self, fields: Iterable[Field]) -> tuple[Column, ...]:
        """A field table as BigQuery columns: (name, type, mode, description)."""
        return tuple(
            (
                f.name,
                self.to_bigquery(f.kind),
                "REQUIRED" if f.required else "NULLABLE",
                f.description,
            )
            for f in fields
        )

    def schema_fields(self, columns: Iterable[Column]) -> list:
        """Columns as the BigQuery client's SchemaFields."""
        from google.cloud import bigquery

        return [
            bigquery.SchemaField(name, kind, mode=mode, description=text)
            for name, kind, mode, text in columns
        ]

    def parameter(self, name: str, value: Any) -> Any:
        """A query parameter typed by its value: how values (never text) enter SQL."""
        from google.cloud import bigquery

        kind = self.for_python(type(value))
        if kind is None:
            raise TypeError(f"unsupported parameter {name}={value!r}")
        return bigquery.ScalarQueryParameter(name, kind, value)


TYPES = BigQueryTypeMapper()
