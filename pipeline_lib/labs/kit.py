"""What the lab notebooks call: the parts around the student's code.

A lab asks a student to write one small piece (a message key, the order of a write
and a commit, a validation rule, a query, a group's joins and leaves, a producer one
contract version ahead). Everything around it is here, so each lab notebook stays a
brief, a parameters cell, the student's cells and a few calls, and so the grader
(:mod:`pipeline_lib.labs.checks`) can run the same student code under a SIGKILL.

The consumer loop of the labs (:func:`run_loop`) is deliberately plain kafka-python:
poll, hand the decoded records to the student's ``handle(records, out)``, repeat.
``out.land`` writes through the pipeline's own sinks (GCS and BigQuery, by load job:
at least once, so a record read twice shows up as a duplicate instead of an error)
and ``out.commit`` commits the consumer's position. Which comes first is the
student's choice, and lab ``commit`` is about that choice.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records import contract
from pipeline_lib.records.batches import DeadLetter
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import Tick
from pipeline_lib.records.streams import TICKS

# Where every lab's simulated market starts: the same seed gives the same ticks.
START = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA")
# A notebook's answers, as display data the grader reads back from the executed copy.
ANSWER_MIME = "application/vnd.pipeline-lab.answer+json"
LAB_RULE_STAGE = "lab-rule"  # the stage of a dead letter the student's rule sends


class LabError(PipelineError):
    """A lab step could not run; the message says which and what to do."""


# --- the market of a lab ---------------------------------------------------------


def lab_settings(name: str, graded: bool) -> Settings:
    """The settings a lab notebook runs on. Graded (the grader's papermill run), the
    environment's as they are: the grader gave the run names of its own. Run by hand,
    names of the lab's own within the user's (a topic and group per run, tables
    ``<table>_lab_<name>``), so a lab never writes into the pipeline's own topic,
    consumer group or table."""
    from pipeline_lib.core.names import run_names
    from pipeline_lib.home import load_settings

    settings = load_settings()
    return settings if graded else run_names(settings, f"lab-{name}", within=True)


def simulated_ticks(count: int, seed: int, symbols: Iterable[str] = SYMBOLS) -> list[Tick]:
    """The first ``count`` ticks of the simulator at ``seed`` from :data:`START`: the
    grader draws the same ones to know what should have landed."""
    from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, symbol_specs

    config = SimulatorConfig(seed=seed, start=START, symbols=symbol_specs(list(symbols)))
    return list(itertools.islice(MarketSimulator(config), count))


def tick_fields(tick: Tick) -> dict[str, Any]:
    """A tick as the JSON object its message carries (contract ``ticks/1.0``)."""
    return orjson.loads(TICKS.encode(tick))


def tick_fields_or_none(value: bytes | None) -> dict[str, Any] | None:
    """A message value as a JSON object, or None when it is not one."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Mix:
    """The dead-letter lab's messages: good ticks, bad prints (valid under the
    contract, broken under the lab's new rule) and malformed messages."""

    messages: list[tuple[bytes | None, bytes]]
    good_ids: list[str]
    bad_print_ids: list[str]
    malformed: int


BAD_PRINTS = 6  # ticks whose high is 25 % above their low: a fat finger
HOSTILE = (
    (b"AAPL", b'{"symbol": "AAPL", "close": "12.5"}'),
    (b"MSFT", b"not json at all"),
    (None, b"[1, 2, 3]"),
)


def lab_mix(count: int, seed: int) -> Mix:
    """``count`` ticks of the seed, :data:`BAD_PRINTS` of them made bad prints, then the
    hostile messages (a text price, not JSON, not an object, a symbol that is SQL)."""
    ticks = simulated_ticks(count, seed)
    step = max(count // BAD_PRINTS, 1)
    bad = {i for i in range(step // 2, count, step)}
    messages, good, bad_ids = [], [], []
    for index, tick in enumerate(ticks):
        data = tick_fields(tick)
        if index in bad:
            data["high"] = round(tick.low * 1.25, 4)
            bad_ids.append(tick.event_id)
        else:
            good.append(tick.event_id)
        messages.append((tick.symbol.encode(), orjson.dumps(data)))
    injected = dict(tick_fields(ticks[0]), symbol="x'; DROP TABLE t;--")
    hostile = [*HOSTILE, (b"x'; DROP TABLE t;--", orjson.dumps(injected))]
    return Mix(messages + hostile, good, bad_ids, len(hostile))


def send_mix(settings: Settings, count: int, seed: int) -> dict[int, int]:
    """Send :func:`lab_mix` to the ticks topic; how many went to each partition."""
    return send_messages(settings, lab_mix(count, seed).messages)


def answer(name: str, value: Any) -> Any:
    """Show ``value`` and keep it in the executed notebook, where the grader finds it
    under ``name``. Returns ``value``."""
    from IPython.display import display

    shown = {"text/plain": f"{name} = {value!r}", ANSWER_MIME: {"name": name, "value": value}}
    display(shown, raw=True)
    return value


# --- producing ---------------------------------------------------------------------


def send_ticks(settings: Settings, ticks: list[Tick]) -> int:
    """Send ``ticks`` to the ticks topic as the pipeline's producer does (keyed by
    symbol); returns how many Kafka acknowledged, or raises."""
    from pipeline_lib.kafka_io.producer import produce

    report = produce(settings, ticks)
    if not report.ok:
        raise LabError(f"the producer did not deliver every tick: {report.summary()}")
    return report.delivered


def send_messages(
    settings: Settings,
    messages: Iterable[tuple[bytes | None, bytes]],
    version: str = TICKS.version,
) -> dict[int, int]:
    """Send (key, value) messages to the ticks topic, stamped with the contract
    ``ticks/<version>``; how many went to each partition. Raises unless Kafka
    acknowledged them all."""
    from pipeline_lib.clients.kafka import ensure_topic, kafka_producer

    topic = route(settings).topic
    ensure_topic(settings, topic)
    headers = [(contract.HEADER, f"{TICKS.name}/{version}".encode())]
    producer = kafka_producer(settings)
    try:
        futures = [producer.send(topic, key=k, value=v, headers=headers) for k, v in messages]
        producer.flush(timeout=settings.delivery_timeout_s + 10)
    finally:
        producer.close(timeout=10)
    failed = [f for f in futures if not f.succeeded()]
    if failed:
        raise LabError(f"{len(failed)} of {len(futures)} messages were not acknowledged")
    partitions: dict[int, int] = {}
    for future in futures:
        partition = future.value.partition
        partitions[partition] = partitions.get(partition, 0) + 1
    return dict(sorted(partitions.items()))


def send_keyed(
    settings: Settings, ticks: list[Tick], key_for: Callable[[Tick], bytes | None]
) -> dict[int, int]:
    """Send each tick with the key ``key_for(tick)`` (None: no key); how many ticks
    went to each partition."""
    return send_messages(settings, ((key_for(t), TICKS.encode(t)) for t in ticks))


def send_versioned(
    settings: Settings,
    ticks: list[Tick],
    upgrade: Callable[[Tick], tuple[str, dict[str, Any]]],
) -> dict[int, int]:
    """Send each tick as ``upgrade(tick)`` makes it: (the contract version it is
    stamped with, the JSON object sent), keyed by symbol, each version in one send."""
    by_version: dict[str, list[tuple[bytes, bytes]]] = {}
    for tick in ticks:
        version, data = upgrade(tick)
        by_version.setdefault(str(version), []).append((tick.symbol.encode(), orjson.dumps(data)))
    sent: dict[int, int] = {}
    for version, messages in by_version.items():
        for partition, count in send_messages(settings, messages, version).items():
            sent[partition] = sent.get(partition, 0) + count
    return dict(sorted(sent.items()))


# --- consuming ---------------------------------------------------------------------


@dataclass(frozen=True)
class LabRecord:
    """One message the lab's consumer read and decoded: the Kafka message (topic,
    partition, offset, key, value, headers) and its tick."""

    message: Any
    tick: Tick


@dataclass
class Out:
    """Where the student's ``handle`` sends a poll's records: :meth:`land` them (GCS
    and BigQuery), :meth:`dead_letter` one with a reason, :meth:`commit` the offsets
    read so far. ``on_step`` (the grader's) is called after each land and commit."""

    settings: Settings
    consumer: Any
    on_step: Callable[[str], None] | None = None
    landed: int = 0
    dead_letters: int = 0
    commits: int = 0
    _sinks: list[Any] = field(default_factory=list)
    _letters: Any = None

    def __post_init__(self) -> None:
        from pipeline_lib.kafka_io.dead_letters import DeadLetterWriter
        from pipeline_lib.sinks.landing import landing_sinks

        self._sinks = landing_sinks(self.settings, bq_write="load")
        for sink in self._sinks:
            sink.setup()
        self._letters = DeadLetterWriter(self.settings)
        self._route = route(self.settings)

    def land(self, records: list[LabRecord]) -> int:
        """Write ``records`` to GCS and BigQuery (every sink, waiting for each);
        returns how many."""
        records = list(records)
        if records:
            batcher = _batcher(self._route.topic, self._route.group)
            by_partition: dict[int, list[Any]] = {}
            for record in sorted(records, key=lambda r: (r.message.partition, r.message.offset)):
                by_partition.setdefault(record.message.partition, []).append(record.message)
            with _quiet_gaps():  # a subset of a poll (lab 3's good records) has holes
                batcher.add_poll(by_partition)
            sealed = batcher.seal(datetime.now(UTC))
            if sealed is not None:
                for sink in self._sinks:
                    sink.write(sealed.batch)
        self.landed += len(records)
        self._step("land")
        return len(records)

    def dead_letter(self, record: LabRecord | Any, reason: str) -> None:
        """Send one record (or a message) to the dead-letter topic with ``reason``,
        its key and its bytes."""
        message = getattr(record, "message", record)
        self._send(
            DeadLetter(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                str(reason)[:500],
                None,
                LAB_RULE_STAGE,
                headers=tuple(message.headers or ()),
            )
        )

    def _send(self, letter: DeadLetter) -> None:
        self._letters.send(letter)
        self.dead_letters += 1

    def commit(self) -> None:
        """Commit the consumer's position: every message read so far counts as done
        (the dead letters sent are acknowledged first)."""
        self._letters.flush()
        self.consumer.commit()
        self.commits += 1
        self._step("commit")

    def _step(self, what: str) -> None:
        if self.on_step is not None:
            self.on_step(what)

    def close(self) -> None:
        self._letters.close()
        for sink in self._sinks:
            sink.close()


@contextlib.contextmanager
def _quiet_gaps() -> Iterator[None]:
    """The batching core's warnings about offsets that skip (a gap in the log) off: the
    records ``land`` is given need not be consecutive."""
    batching = logging.getLogger("pipeline_lib.kafka_io.batching")
    level = batching.level
    batching.setLevel(logging.ERROR)
    try:
        yield
    finally:
        batching.setLevel(level)


def _batcher(topic: str, group: str) -> Any:
    """A Batcher that decodes ticks as the pipeline's consumer does."""
    from pipeline_lib.kafka_io.batching import Batcher

    return Batcher(
        topic,
        batch_size=1_000_000,
        flush_interval=3600.0,
        decode=TICKS.decode,
        read=TICKS.read,
        refuse=functools.partial(contract.refusal, TICKS),
        columns=TICKS,
        group=group,
    )


def decoded(messages: list[Any], out: Out) -> list[LabRecord]:
    """The messages that are ticks under this consumer's contract, each with its tick;
    any other message goes to the dead-letter topic with the pipeline's reason."""
    from pipeline_lib.records.schema import InvalidRecord

    records = []
    for message in messages:
        refused = contract.refusal(TICKS, message.headers)
        try:
            if refused:
                raise InvalidRecord(refused)
            tick, _extras = TICKS.read(message.value)
        except InvalidRecord as error:
            out._send(
                DeadLetter(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    str(error)[:500],
                    error.field,
                    "decode",
                    headers=tuple(message.headers or ()),
                )
            )
            continue
        records.append(LabRecord(message, tick))
    return records


@dataclass
class LoopReport:
    """What one run of :func:`run_loop` did."""

    polls: int
    read: int
    landed: int
    dead_letters: int
    commits: int

    def summary(self) -> str:
        return (
            f"read {self.read:,} messages in {self.polls} polls; landed {self.landed:,}, "
            f"{self.dead_letters:,} dead letters, {self.commits} commits"
        )


def run_loop(
    settings: Settings,
    handle: Callable[[list[LabRecord], Out], Any],
    *,
    poll_records: int = 200,
    until_idle_s: float = 5.0,
    duration_s: float = 120.0,
    on_step: Callable[[str], None] | None = None,
    **consumer_options: Any,
) -> LoopReport:
    """Poll the ticks topic in the consumer group, at most ``poll_records`` a poll,
    and hand each poll's decoded records to ``handle(records, out)``; stop once
    nothing came for ``until_idle_s`` (counted from the first assignment) or after
    ``duration_s``. ``consumer_options``: more KafkaConsumer settings."""
    from pipeline_lib.clients.kafka import ensure_topic, kafka_consumer

    to = route(settings)
    ensure_topic(settings, to.topic)
    ensure_topic(settings, to.dead_letter_topic)
    consumer = kafka_consumer(settings, to.group, max_poll_records=poll_records, **consumer_options)
    out = None
    polls = read = 0
    started = time.monotonic()
    last = None  # idle is counted from the first assignment: a member that restarts
    # after a crash waits for the group to give up on its former self first
    try:
        consumer.subscribe([to.topic])
        out = Out(settings, consumer, on_step)
        while time.monotonic() - started < duration_s:
            polled = consumer.poll(timeout_ms=500)
            messages = [m for batch in polled.values() for m in batch]
            if last is None and consumer.assignment():
                last = time.monotonic()
            if not messages:
                if last is not None and time.monotonic() - last >= until_idle_s:
                    break
                continue
            polls, read, last = polls + 1, read + len(messages), time.monotonic()
            handle(decoded(messages, out), out)
    finally:
        try:
            if out is not None:
                out.close()
        finally:
            consumer.close(autocommit=False)
    return LoopReport(polls, read, out.landed, out.dead_letters, out.commits)


def land_stream(settings: Settings, until_idle_s: float = 4.0) -> str:
    """Land what the ticks topic holds with the pipeline's own consumer; its summary."""
    from pipeline_lib.kafka_io.consume import consume

    return consume(settings, until_idle=until_idle_s, duration=120.0).summary()


def replay(settings: Settings, ticks: list[Tick]) -> int:
    """Land ``ticks`` in the raw table once more, as a consumer that crashed after
    writing and before committing would on its restart (by load job, at least once):
    the raw table then holds them twice. Returns how many."""
    from pipeline_lib.records.batches import Batch
    from pipeline_lib.sinks.landing import landing_sinks

    to = route(settings)
    part = TICKS.partition_batch(to.topic, 0, ticks, list(range(len(ticks))))
    for sink in landing_sinks(settings, bq_write="load")[-1:]:  # the table only
        sink.setup()
        sink.write(Batch([part], datetime.now(UTC), to.group))
        sink.close()
    return len(ticks)


# --- a consumer group --------------------------------------------------------------


@dataclass
class Member:
    """A member of the consumer group in a process of its own: the pipeline's
    consumer, small batches, stopping once idle."""

    name: str
    process: subprocess.Popen

    def leave(self) -> dict[str, Any]:
        """Leave the group now (SIGTERM: the member lands and commits what it holds,
        then leaves); its report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the member stops by itself (idle); its report. A member still
        running after ``timeout`` seconds is killed."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise LabError(f"member {self.name} ran past {timeout:.0f}s and was stopped") from None
        if self.process.returncode != 0:
            raise LabError(f"member {self.name} failed: {err.strip().splitlines()[-1:]}")
        lines = out.strip().splitlines()
        if not lines:
            raise LabError(f"member {self.name} printed no report")
        report = json.loads(lines[-1])
        report["member"] = self.name
        return report


def start_member(settings: Settings, name: str, until_idle_s: float = 6.0) -> Member:
    """Start a member of the ticks consumer group (``python -m pipeline_lib consume``)
    that reads in batches of 300 and stops after ``until_idle_s`` without records."""
    env = {**os.environ, **settings.to_env()}
    command = [
        sys.executable,
        "-m",
        "pipeline_lib",
        "consume",
        "--stream",
        "ticks",
        "--json",
        "--quiet",
        "--until-idle",
        str(until_idle_s),
        "--batch-size",
        "300",
        "--flush-interval",
        "0.5",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Member(name, process)


def send_paced(settings: Settings, count: int, seed: int, rate: float) -> subprocess.Popen:
    """Send :func:`simulated_ticks` ``(count, seed)`` at ``rate`` a second from a
    process of its own (the group lab's producer runs while members come and go);
    wait for it with ``.wait()`` (exit 0: every tick acknowledged)."""
    env = {**os.environ, **settings.to_env()}
    code = (
        "import sys; from pipeline_lib import load_settings; "
        "from pipeline_lib.labs.kit import simulated_ticks; "
        "from pipeline_lib.kafka_io.producer import produce; "
        "r = produce(load_settings(), simulated_ticks(int(sys.argv[1]), int(sys.argv[2])), "
        "rate=float(sys.argv[3])); sys.exit(0 if r.ok else 1)"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(count), str(seed), str(rate)], env=env)


# --- what the notebooks show -----------------------------------------------------


def dead_letter_table(settings: Settings, limit: int = 50) -> Any:
    """The ticks' dead letters as a DataFrame: stage, reason, key, partition, offset."""
    import pandas as pd

    from pipeline_lib.kafka_io.dead_letters import read_dead_letters

    letters = read_dead_letters(settings, limit=limit)
    rows = [
        {
            "stage": d.stage,
            "reason": d.reason,
            "key": (d.key or b"").decode("utf-8", "replace"),
            "partition": d.partition,
            "offset": d.offset,
        }
        for d in letters
    ]
    return pd.DataFrame(rows, columns=["stage", "reason", "key", "partition", "offset"])


def run_bars(settings: Settings, bars_sql: Callable[[str, str], str], symbol: str) -> Any:
    """Run the SQL ``bars_sql(raw, view)`` gives for ``symbol`` (the ``@symbol``
    parameter) on the ticks' table; its rows as a DataFrame."""
    from pipeline_lib.clients.google import run_query
    from pipeline_lib.sinks.bigquery.type_mapper import TYPES

    to = route(settings)
    sql = bars_sql(to.table_sql, to.view_sql)
    rows = run_query(
        settings, sql, name="your bars", parameters=[TYPES.parameter("symbol", symbol)]
    )
    return rows.to_dataframe(create_bqstorage_client=False)


def bars_figure(bars: Any, symbol: str) -> Any:
    """Candlesticks of the lab's bars (a ``minute`` column) with their VWAP line."""
    from pipeline_lib.analysis.plots import candlestick_figure

    return candlestick_figure(bars.rename(columns={"minute": "ts"}), symbol)


def table_columns(settings: Settings) -> Any:
    """The ticks' raw table's columns and types, as a DataFrame."""
    import pandas as pd

    from pipeline_lib.clients.google import bigquery_client

    table = bigquery_client(settings).get_table(route(settings).table_id)
    return pd.DataFrame([(f.name, f.field_type) for f in table.schema], columns=["column", "type"])
