"""The news stream without a broker: its record, simulator, AlphaVantage parser, settings,
and the consumer loop landing news and ending with the ticks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.records.news import News, decode, encode, make_news_id, parse_news, scored
from pipeline_lib.records.routes import route
from pipeline_lib.records.schema import InvalidRecord, Tick
from pipeline_lib.records.sentiment import score
from pipeline_lib.records.streams import NEWS, TICKS, get_stream, stream_of
from pipeline_lib.sources import Merged, source_from_parameters, stream
from pipeline_lib.sources.alphavantage import parse_news_feed
from pipeline_lib.sources.news_simulator import (
    BACKGROUND,
    NEGATIVE,
    POSITIVE,
    NewsConfig,
    NewsSimulator,
    moves_between,
)
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, symbol_specs
from tests.fakes import TOPIC, FakeConsumer, FakeGroup, RecordingDeadLetters, RecordingSink
from tests.fixtures.alphavantage import NEWS_IBM_AAPL

START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
SYMBOLS = [s.symbol for s in symbol_specs(None)]


def story(**changes) -> dict:
    record = scored(
        make_news_id("t", "AAPL", "u"), "AAPL", START, "Apple beats estimates", "simulator"
    )
    data = orjson.loads(encode(record))
    data.update(changes)
    return data


# --- the record --------------------------------------------------------------------


def test_news_round_trips_and_its_columns_come_from_the_field_table():
    record = scored(
        make_news_id("avn", "IBM", "https://x"),
        "IBM",
        START,
        "IBM beats estimates",
        "alphavantage",
        provider_sentiment=0.4,
        relevance=0.9,
        url="https://x",
    )
    assert decode(encode(record)) == record
    assert record.sentiment > 0 and record.sentiment_label == "positive"
    columns = {name: (kind, mode) for name, kind, mode, _ in NEWS.columns}
    assert columns["sentiment"] == ("FLOAT64", "REQUIRED")
    assert columns["provider_sentiment"] == ("FLOAT64", "NULLABLE")
    assert columns["ts"] == ("TIMESTAMP", "REQUIRED")
    landing = ["ingested_at", "kafka_topic", "kafka_partition", "kafka_offset", "extra"]
    assert list(columns)[-5:] == landing
    assert [c[0] for c in NEWS.columns][: len(News._fields)] == list(News._fields)
    assert NEWS.id_field == "news_id" and TICKS.id_field == "event_id"
    assert stream_of(record) is NEWS and get_stream("ticks") is TICKS


def test_news_ids_are_stable_and_differ_per_symbol_and_story():
    assert make_news_id("avn", "IBM", "u1") == make_news_id("avn", "IBM", "u1")
    assert len({make_news_id("avn", s, u) for s in ("IBM", "AAPL") for u in ("u1", "u2")}) == 4


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (orjson.dumps(story(headline="")), "headline"),
        (orjson.dumps(story(headline="   \n ")), "headline"),
        (orjson.dumps(story(headline="x" * 100_000)), "headline"),  # a 100 kB headline
        (orjson.dumps(story(ts="yesterday")), "ts"),
        (orjson.dumps(story(ts="2024-03-04T14:30:00")), "ts"),  # no zone
        (orjson.dumps(story(symbol="x'; DROP TABLE t;--")), "symbol"),
        (orjson.dumps(story(symbol="not a ticker")), "symbol"),
        (orjson.dumps(story(symbol="")), "symbol"),
        (orjson.dumps(story(sentiment=1.5)), "sentiment"),
        (orjson.dumps(story(sentiment="0.5")), "sentiment"),
        (orjson.dumps(story(sentiment_label="bullish")), "sentiment_label"),
        (orjson.dumps(story(provider_sentiment=float("inf"))), None),  # orjson writes null
        (orjson.dumps(story(relevance=-0.1)), "relevance"),
        (orjson.dumps(story(source="twitter")), "source"),
        (orjson.dumps(story(headline="line\x00break")), "headline"),
        (orjson.dumps(story(news_id="")), "news_id"),
        (orjson.dumps(story(news_id="a\nb")), "news_id"),
        (orjson.dumps(story(news_id="x" * 129)), "news_id"),
        (orjson.dumps(story(news_id=7)), "news_id"),
    ],
)
def test_bad_news_is_refused_with_the_field_to_blame(raw, field):
    if field is None:  # an infinite provider score cannot even be written as JSON
        assert decode(raw).provider_sentiment is None
        return
    with pytest.raises(InvalidRecord) as error:
        decode(raw)
    assert error.value.field == field


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe not utf-8",  # invalid UTF-8
        b'{"headline": "\xc3\x28"}',  # invalid UTF-8 inside JSON
        b"[1, 2]",
        b"{oops",
        None,
        orjson.dumps({**story(), "extra": 1}),
        orjson.dumps({k: v for k, v in story().items() if k != "ts"}),
    ],
)
def test_undecodable_or_misshapen_news_is_an_invalid_record(raw):
    with pytest.raises(InvalidRecord):
        decode(raw)


def test_multiline_headlines_collapse_to_one_line():
    assert (
        parse_news(story(headline="Apple\n  beats\testimates")).headline == "Apple beats estimates"
    )


# --- the simulator -----------------------------------------------------------------


def test_every_template_reads_the_way_it_moves_the_price():
    for template in POSITIVE:
        assert score(template.format(co="Acme")).label == "positive", template
    for template in NEGATIVE:
        assert score(template.format(co="Acme")).label == "negative", template
    assert len(set(POSITIVE + NEGATIVE + BACKGROUND)) == 30  # variety, no duplicates


def test_same_seed_and_start_same_news_other_seed_other_news():
    a = list(itertools.islice(NewsSimulator(SYMBOLS, 7, START), 50))
    b = list(itertools.islice(NewsSimulator(SYMBOLS, 7, START), 50))
    c = list(itertools.islice(NewsSimulator(SYMBOLS, 8, START), 50))
    assert a == b and a != c
    assert [n.ts for n in a] == sorted(n.ts for n in a)
    assert len({n.news_id for n in a}) == 50
    assert all(n.ts >= START for n in a)
    assert a[0].news_id.startswith(f"{MarketSimulator(SimulatorConfig(seed=7, start=START)).tag}:")


def test_each_price_moving_story_comes_with_its_move_a_minute_later():
    """The coupling the analysis looks for: every material story is published lead_s
    before a jump of the same sign in that symbol's price."""
    hours = 3
    config = NewsConfig()
    ticks = list(
        itertools.islice(
            MarketSimulator(SimulatorConfig(seed=11, start=START)), len(SYMBOLS) * 3600 * hours
        )
    )
    end = ticks[-1].ts
    closes = {(t.symbol, t.ts): t for t in ticks}
    news = itertools.takewhile(lambda n: n.ts < end, NewsSimulator(SYMBOLS, 11, START))
    by_time = {(n.symbol, n.ts): n for n in news}
    start_us = int(START.timestamp() * 1e6) + int(config.lead_s * 1e6)
    events = moves_between(11, SYMBOLS, start_us, int(end.timestamp() * 1e6) - 120_000_000, config)
    assert len(events) >= 20  # about one per symbol and hour
    for event in events:
        published = datetime.fromtimestamp((event.time_us - config.lead_s * 1e6) / 1e6, UTC)
        headline = by_time[(event.symbol, published)]
        assert np.sign(headline.sentiment) == event.sign, headline.headline
        # The move lands on the first one-second bar at or after the event.
        when = datetime.fromtimestamp(event.time_us / 1e6, UTC)
        bar_ts = when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)
        bar = closes[(event.symbol, bar_ts)]
        assert np.sign(np.log(bar.close / bar.open)) == event.sign, (event, bar)


def test_without_jumps_news_moves_nothing():
    plain = itertools.islice(MarketSimulator(SimulatorConfig(seed=4, start=START, news=None)), 5000)
    off = itertools.islice(MarketSimulator(SimulatorConfig(seed=4, start=START)), 5000)
    assert list(plain) != list(off)  # the default has news moves ...
    a = itertools.islice(MarketSimulator(SimulatorConfig(seed=4, start=START, jumps=False)), 5000)
    b = itertools.islice(
        MarketSimulator(SimulatorConfig(seed=4, start=START, jumps=False, news=None)), 5000
    )
    assert list(a) == list(b)  # ... and jumps=False turns them off


def test_bad_news_settings_are_refused():
    from pipeline_lib.sources.base import SourceError

    for bad in ({"lead_s": 7200}, {"material_per_hour": -1}, {"min_move": 0.1, "max_move": 0.01}):
        with pytest.raises(SourceError):
            NewsConfig(**bad)


def test_both_streams_merge_in_event_order_and_max_records_counts_ticks():
    source = source_from_parameters(
        Settings.from_env({}), stream="both", seed=3, start="2024-03-04T14:30:00Z"
    )
    assert isinstance(source, Merged) and source.seed == 3
    records = list(stream(source, max_records=24_000))
    ticks = [r for r in records if isinstance(r, Tick)]
    news = [r for r in records if isinstance(r, News)]
    assert len(ticks) == 24_000 and len(news) > 5
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    assert all(n.news_id.split(":")[0] == ticks[0].event_id.split(":")[0] for n in news)


def test_csv_has_no_news_and_says_what_to_use():
    from pipeline_lib.sources.base import SourceError

    with pytest.raises(SourceError, match="--stream ticks"):
        source_from_parameters(Settings.from_env({}), source="csv", stream="news")


# --- AlphaVantage NEWS_SENTIMENT -----------------------------------------------------


def test_news_feed_gives_one_record_per_relevant_equity_ticker():
    records, problems = parse_news_feed(NEWS_IBM_AAPL, ["IBM", "AAPL"])
    assert [(r.symbol, r.provider_sentiment, r.relevance) for r in records] == [
        ("AAPL", -0.38, 0.82),  # 10:15 New York, before the 16:30 IBM story
        ("IBM", 0.52, 0.91),  # AAPL at 0.05 relevance and CRYPTO:BTC are left out
    ]
    apple, ibm = records
    assert apple.ts == datetime(2024, 1, 5, 15, 15, tzinfo=UTC)  # US/Eastern read as such
    assert apple.sentiment < 0 < ibm.sentiment  # our score agrees with AlphaVantage's sign
    assert apple.summary is None and ibm.publisher == "Example Wire"
    assert ibm.news_id == make_news_id("avn", "IBM", "https://news.example/ibm-beats")
    assert len(problems) == 2  # the untitled story and the malformed time, each with why
    assert "headline" in problems[0] and "time_published" in problems[1]


def test_news_feed_error_bodies_raise():
    from pipeline_lib.sources.alphavantage import AlphaVantageError, RateLimitError
    from tests.fixtures.alphavantage import RATE_LIMIT_DAILY

    with pytest.raises(RateLimitError):
        parse_news_feed(RATE_LIMIT_DAILY)
    with pytest.raises(AlphaVantageError, match="no 'feed'"):
        parse_news_feed({"items": "0"})


# --- settings ------------------------------------------------------------------------


def test_each_stream_has_its_own_topic_dead_letters_group_and_table():
    base = Settings.from_env({"PIPELINE_NEWS_TOPIC": "headlines", "BQ_NEWS_TABLE": "stories"})
    news = route(base, "news")
    assert (news.topic, news.dead_letter_topic) == ("headlines", "headlines.dlq")
    assert news.group == f"{base.consumer_group}-news"
    assert news.table_id.endswith(".stories") and news.dedup_view == "stories_dedup"
    assert route(base, news) is news
    ticks = route(base)
    assert (ticks.topic, ticks.group, ticks.table) == (base.topic, base.consumer_group, "ticks")
    assert Settings.from_env(base.to_env()) == base  # one set of settings for every stream


@pytest.mark.parametrize(
    "env",
    [
        {"PIPELINE_NEWS_TOPIC": "stock-ticks"},
        {"PIPELINE_NEWS_DLQ_TOPIC": "stock-ticks.dlq"},
        {"BQ_NEWS_TABLE": "ticks"},
        {"BQ_NEWS_TABLE": "ticks_dedup"},
        {"PIPELINE_NEWS_TOPIC": "bad topic!"},
    ],
)
def test_colliding_or_malformed_news_names_are_refused(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


# --- the consumer loop on the news stream ------------------------------------------


def news_log(partitions: int, per_partition: int, bad: list[bytes]) -> FakeGroup:
    stories = iter(NewsSimulator(SYMBOLS, 9, START))
    log: dict[int, list[bytes | None]] = {}
    for p in range(partitions):
        log[p] = [encode(next(stories)) for _ in range(per_partition)]
    log[0][3:3] = bad
    return FakeGroup(log)


def run_news(group, **run_options):
    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
    sink, letters = RecordingSink(), RecordingDeadLetters()
    member = SinkConsumer(
        settings.with_overrides(news_topic=TOPIC),
        stream="news",
        sinks=[sink],
        consumer_factory=lambda listener: FakeConsumer(group, listener, set(group.log)),
        dead_letters=letters,
        create_topics=False,
        batch_size=20,
        flush_interval=0.01,
    )
    return member, sink, letters


def test_the_consumer_lands_news_and_dead_letters_bad_stories():
    bad = [
        orjson.dumps(story(headline="")),
        orjson.dumps(story(headline="x" * 100_000)),
        orjson.dumps(story(ts="not a time")),
        orjson.dumps(story(symbol="x'; DROP TABLE t;--")),
        b"\xff\xfe",
    ]
    group = news_log(3, 30, bad)
    member, sink, letters = run_news(group)
    report = member.run(until_idle=0.05, handle_signals=False)
    assert group.committed == {p: len(v) for p, v in group.log.items()}
    assert len(sink.written) == 90 and report.dead_letters == 5
    assert {d.offset for d in letters.sent} == {3, 4, 5, 6, 7}
    assert [d.field for d in letters.sent] == ["headline", "headline", "ts", "symbol", None]
    assert "not valid UTF-8" in letters.sent[-1].reason


def test_a_draining_member_stops_once_caught_up():
    """How `consume` ends the news member after the ticks member reached its bound."""
    group = news_log(2, 25, [])
    member, sink, _ = run_news(group)
    member.stop_when_caught_up()
    report = member.run(duration=30, handle_signals=False)  # would run 30 s otherwise
    assert report.stopped_because == "caught up after the other streams finished"
    assert len(sink.written) == 50 and report.seconds < 10


# --- analysis helpers -----------------------------------------------------------------


def test_lead_lag_finds_news_that_leads_the_price_by_a_minute():
    import pandas as pd

    from pipeline_lib.analysis.queries import most_covered_symbol, sentiment_lead_lag

    rng = np.random.default_rng(1)
    n = 400
    sentiment = np.where(rng.random(n) < 0.5, -0.6, 0.6)
    has_news = rng.random(n) < 0.2
    minutes = pd.DataFrame(
        {
            "stories": has_news.astype(int),
            "sentiment": np.where(has_news, sentiment, np.nan),
            "return_0": rng.normal(0, 1e-3, n),
            "return_1": rng.normal(0, 1e-3, n) + np.where(has_news, sentiment * 1e-2, 0),
            "return_5": rng.normal(0, 3e-3, n),
        }
    )
    table = sentiment_lead_lag(minutes).set_index("horizon")
    assert table.loc["next minute", "correlation"] > 0.9
    assert abs(table.loc["same minute", "correlation"]) < 0.3
    assert (
        table.loc["next minute", "after_negative_bp"]
        < 0
        < table.loc["next minute", "after_positive_bp"]
    )
    assert table["minutes_with_news"].eq(has_news.sum()).all()
    empty = sentiment_lead_lag(minutes.iloc[0:0])
    assert empty["minutes_with_news"].eq(0).all() and empty["correlation"].isna().all()
    coverage = pd.DataFrame({"symbol": ["B", "A", "C"], "stories": [3, 3, 1]})
    assert most_covered_symbol(coverage, "Z") == "A"
    assert most_covered_symbol(coverage.iloc[0:0], "Z") == "Z"
