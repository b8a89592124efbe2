"""The record contract: what a producer may send on a stream, its version, and how
a consumer of another version reads it.

**The contract** of a stream is its field table (``Stream.fields``: names, kinds,
required or not) and a version ``MAJOR.MINOR``. There is no schema registry here
(none installs from PyPI), so the contract lives in the repository;
:func:`json_schema` exports it as JSON Schema for producers in other languages
(``python -m pipeline_lib contract``).

**The compatibility rule.**

* Adding a field that may be null (absent) is compatible: the minor version goes up.
  A consumer of an older minor version still lands such a record: its known fields
  as always, the fields it does not know kept beside them (verbatim in GCS; in
  BigQuery in the ``extra`` JSON column, or in columns of their own with
  ``PIPELINE_SCHEMA_UPDATES=add``), counted in its run report. Never a dead letter
  for that alone.
* Removing a field, making it required, or changing its type is a new major version:
  a consumer of another major version sends those records to the dead-letter topic
  with the reason (read them with a consumer of that version, on a topic of their
  own).

**The stamp.** Producers put the stream and version in the ``contract`` header of each
message (``ticks/1.0``). A message without one is read as the consumer's own version
(older producers, other tools).
"""

from __future__ import annotations

from typing import Any

HEADER = "contract"
MAX_UNKNOWN_FIELDS = 100  # more than this on one record is not a newer contract


def stamp(stream: Any) -> tuple[str, bytes]:
    """The header a producer adds to each message of ``stream``."""
    return HEADER, f"{stream.name}/{stream.version}".encode()


def refusal(stream: Any, headers: Any) -> str | None:
    """Why a message stamped ``headers`` cannot be read as ``stream`` (another major
    version, or another stream's records), or None: it can."""
    for name, value in headers or ():
        if name != HEADER:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        kind, _, version = text.partition("/")
        major = version.split(".", 1)[0]
        ours = str(stream.version).split(".", 1)[0]
        if kind != stream.name:
            return f"written under contract {text[:60]!r}: a {kind[:40]} record, not {stream.name}"
        if major != ours:
            return (
                f"written under contract {text[:60]}, a major version this consumer "
                f"({stream.name}/{stream.version}) cannot read: a field was removed or "
                "retyped. Read it with a consumer of that version, on a topic of its own"
            )
    return None


_JSON_TYPES = {
    "text": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"},
    "price": {"type": "number", "exclusiveMinimum": 0},
    "count": {"type": "integer", "minimum": 0},
    "score": {"type": "number"},
}


def json_schema(stream: Any) -> dict[str, Any]:
    """The stream's contract as a JSON Schema (draft 2020-12): its fields, which are
    required, and ``additionalProperties: true`` (the compatibility rule above)."""
    properties = {}
    for field in stream.fields:
        kind = dict(_JSON_TYPES[field.kind])
        if not field.required:
            kind = {"anyOf": [kind, {"type": "null"}]}
        properties[field.name] = {**kind, "description": field.description}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{stream.name} {stream.version}",
        "description": stream.description,
        "type": "object",
        "properties": properties,
        "required": [f.name for f in stream.fields if f.required],
        "additionalProperties": True,
        "x-contract-header": f"{HEADER}: {stream.name}/{stream.version}",
    }
