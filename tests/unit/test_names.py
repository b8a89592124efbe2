"""One run's names (pipeline_lib.core.names.run_names) and each stream's names under
them (pipeline_lib.records.routes.route): fresh per call, valid, distinct."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline_lib.core.checks import check_bucket, check_group, check_name, check_topic
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.core.names import run_names
from pipeline_lib.records.routes import SETTINGS_FIELDS, drill_settings, route, routes
from pipeline_lib.records.streams import STREAMS, TICKS, register

BASE = Settings.from_env({"PIPELINE_HOME": "/tmp/unused"})
NAME_FIELDS = (
    "topic",
    "dead_letter_topic",
    "news_topic",
    "news_dead_letter_topic",
    "consumer_group",
    "gcs_bucket",
    "bq_dataset",
    "bq_table",
    "bq_news_table",
)


@pytest.fixture
def third_stream():
    """A registered stream besides ticks and news (named by the generic rule)."""
    stream = register(dataclasses.replace(TICKS, name="quotes_for_names"))
    yield stream
    del STREAMS[stream.name]


def names_of(settings: Settings) -> dict[str, str]:
    return {field: getattr(settings, field) for field in NAME_FIELDS}


@pytest.mark.parametrize("within", [False, True])
def test_each_call_gives_names_no_other_call_gave(within):
    runs = [run_names(BASE, "test", within=within) for _ in range(200)]
    changed = [f for f in NAME_FIELDS if getattr(runs[0], f) != getattr(BASE, f)]
    assert set(changed) >= {"topic", "dead_letter_topic", "consumer_group"}
    for field in changed:
        values = {getattr(run, field) for run in runs}
        if within and field in {"bq_table", "bq_news_table"}:
            assert len(values) == 1  # a drill's tables: the same each time, made anew
        else:
            assert len(values) == len(runs), field


@pytest.mark.parametrize(
    ("label", "within"),
    [
        ("test", False),
        ("nb", False),
        ("bench-streams-ticks", False),
        ("bench-sasl_ssl-0", False),
        ("crash-drill", True),
        ("schema-lesson", True),
    ],
)
def test_every_name_is_valid_as_the_environment_would_check_it(label, within):
    mine = run_names(BASE, label, within=within)
    for topic in (mine.topic, mine.dead_letter_topic, mine.news_topic, mine.news_dead_letter_topic):
        check_topic(topic, "topic")
    check_group(mine.consumer_group, "group")
    check_bucket(mine.gcs_bucket)
    check_name(mine.bq_dataset, "dataset")
    check_name(mine.bq_table)
    check_name(mine.bq_news_table)
    assert Settings.from_env(mine.to_env()) == mine  # every check of the environment


def test_a_run_of_its_own_and_a_run_within_the_settings():
    own = run_names(BASE, "nb")
    token = own.topic.split("-")[1]
    assert names_of(own) == {
        **names_of(BASE),
        "topic": f"nb-{token}-ticks",
        "dead_letter_topic": f"nb-{token}-ticks.dlq",
        "news_topic": f"nb-{token}-news",
        "news_dead_letter_topic": f"nb-{token}-news.dlq",
        "consumer_group": f"nb-{token}-group",
        "gcs_bucket": f"nb-{token}-raw",
        "bq_dataset": f"nb_{token}",
    }
    drill = drill_settings(BASE, "crash-drill")
    token = drill.topic.rsplit("-", 1)[1]
    assert names_of(drill) == {
        **names_of(BASE),
        "topic": f"stock-ticks-crash-drill-{token}",
        "dead_letter_topic": f"stock-ticks-crash-drill-{token}.dlq",
        "news_topic": f"stock-news-crash-drill-{token}",
        "news_dead_letter_topic": f"stock-news-crash-drill-{token}.dlq",
        "consumer_group": f"stock-pipeline-sink-crash-drill-{token}",
        "bq_table": "ticks_crash_drill",
        "bq_news_table": "news_crash_drill",
    }  # the user's bucket and dataset


@pytest.mark.parametrize("label", ["", "Test", "1st", "a b", "a.b", "ü", "x" * 41, "a\n"])
def test_a_label_that_cannot_name_everything_is_refused(label):
    with pytest.raises(ConfigError, match="run label"):
        run_names(BASE, label)


def test_a_name_grown_too_long_is_refused():
    long = BASE.with_overrides(topic="t" * 240)
    with pytest.raises(ConfigError, match="not a Kafka topic name"):
        run_names(long, "crash-drill", within=True)


@pytest.mark.parametrize("within", [False, True])
def test_every_stream_has_names_of_its_own_in_a_run(third_stream, within):
    mine = run_names(BASE, "test", within=within)
    every = routes(mine, "all")
    assert [r.name for r in every] == ["ticks", "news", third_stream.name]
    for part in ("topic", "dead_letter_topic", "group", "table"):
        values = [getattr(r, part) for r in every]
        assert len(set(values)) == len(values), part
    topics = [t for r in every for t in (r.topic, r.dead_letter_topic)]
    assert len(set(topics)) == len(topics)
    assert {r.table for r in every}.isdisjoint({r.dedup_view for r in every})


def test_streams_are_named_by_one_rule(third_stream):
    """Ticks and news by the variables that name them (the same names as ever), any
    other registered stream ``s`` by ``stock-s``."""
    assert set(SETTINGS_FIELDS) == {"ticks", "news"}
    ticks, news, quotes = (route(BASE, name) for name in ("ticks", "news", third_stream.name))
    assert (ticks.topic, ticks.dead_letter_topic, ticks.group, ticks.table) == (
        "stock-ticks",
        "stock-ticks.dlq",
        "stock-pipeline-sink",
        "ticks",
    )
    assert (news.topic, news.dead_letter_topic, news.group, news.table) == (
        "stock-news",
        "stock-news.dlq",
        "stock-pipeline-sink-news",
        "news",
    )
    assert (quotes.topic, quotes.dead_letter_topic, quotes.group, quotes.table) == (
        "stock-quotes_for_names",
        "stock-quotes_for_names.dlq",
        "stock-pipeline-sink-quotes_for_names",
        "quotes_for_names",
    )


@pytest.mark.parametrize(
    "taken",
    [
        {"topic": "stock-quotes_for_names"},
        {"news_dead_letter_topic": "stock-quotes_for_names.dlq"},
        {"bq_news_table": "quotes_for_names"},
    ],
)
def test_a_registered_stream_may_not_take_the_names_of_ticks_or_news(third_stream, taken):
    with pytest.raises(ConfigError, match="would share"):
        route(BASE.with_overrides(**taken), third_stream)
