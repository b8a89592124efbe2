"""The AlphaVantage client against a local server answering in AlphaVantage's format."""

import pytest

from pipeline_lib.records.schema import InvalidRecord
from pipeline_lib.sources.alphavantage import (
    AlphaVantageClient,
    AlphaVantageError,
    AlphaVantageSource,
    MissingApiKey,
    PremiumEndpointError,
    RateLimitError,
)
from pipeline_lib.sources.base import bounded
from tests.fixtures.alphavantage import FakeAlphaVantage


@pytest.fixture
def fake():
    with FakeAlphaVantage() as server:
        yield server


def client(fake, tmp_path, key="SECRETKEY", limit=25):
    return AlphaVantageClient(key, fake.url, cache_dir=tmp_path / "av", daily_limit=limit)


def test_intraday_source_and_cache(fake, tmp_path):
    ticks = list(AlphaVantageSource(client(fake, tmp_path), ["IBM"]))
    assert [t.close for t in ticks] == [158.9, 159.15, 159.16]
    assert fake.requests[0]["function"] == "TIME_SERIES_INTRADAY"
    assert fake.requests[0]["interval"] == "5min"
    # A re-run (new client, same cache) spends no call.
    again = list(AlphaVantageSource(client(fake, tmp_path), ["IBM"]))
    assert again == ticks
    assert len(fake.requests) == 1
    assert client(fake, tmp_path).calls_today() == 1


def test_quote_polling_is_bounded(fake, tmp_path):
    source = AlphaVantageSource(
        client(fake, tmp_path), ["IBM"], function="quote", poll_seconds=0.01
    )
    ticks = list(bounded(source, max_records=3))
    assert [t.close for t in ticks] == [159.16] * 3
    assert len(fake.requests) == 3  # every poll asks for a fresh quote
    # A re-run starts from the cached quote: its first record costs no call.
    rerun = AlphaVantageSource(client(fake, tmp_path), ["IBM"], function="quote")
    assert next(iter(rerun)).close == 159.16
    assert len(fake.requests) == 3


def test_daily_budget_is_enforced_locally(fake, tmp_path):
    c = client(fake, tmp_path, limit=2)
    c.intraday("IBM")
    c.global_quote("IBM")
    with pytest.raises(RateLimitError, match="limit 2"):
        c.intraday("IBM", interval="1min")
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("symbol", "error", "text"),
    [
        ("BAD", AlphaVantageError, "Invalid API call"),
        ("LIMIT", RateLimitError, "25 requests per day"),
        ("PREM", PremiumEndpointError, "premium"),
        ("NOTE", RateLimitError, "call frequency"),
    ],
)
def test_error_bodies_over_http(fake, tmp_path, symbol, error, text):
    with pytest.raises(error, match=text) as caught:
        client(fake, tmp_path).intraday(symbol)
    assert "SECRETKEY" not in str(caught.value)
    assert not list((tmp_path / "av").glob("*/*.json")), "errors are never cached"


def test_wrong_key_and_missing_key(fake, tmp_path):
    with pytest.raises(AlphaVantageError, match="apikey is invalid"):
        client(fake, tmp_path, key="WRONG").intraday("IBM")
    with pytest.raises(MissingApiKey, match="ALPHAVANTAGE_API_KEY"):
        client(fake, tmp_path, key=None).intraday("IBM")


def test_unreachable_server_is_a_clear_error_without_the_key(tmp_path):
    c = AlphaVantageClient("SECRETKEY", "http://127.0.0.1:9/query", cache_dir=tmp_path, timeout=2)
    with pytest.raises(AlphaVantageError, match="could not reach") as caught:
        c.intraday("IBM")
    assert "SECRETKEY" not in str(caught.value)


def test_hostile_symbol_never_reaches_the_network(fake, tmp_path):
    with pytest.raises(InvalidRecord):
        client(fake, tmp_path).intraday("x'); DROP TABLE t;--")
    assert fake.requests == []


def test_news_source_over_http_uses_one_cached_call_for_all_tickers(fake, tmp_path):
    from pipeline_lib.sources.alphavantage import AlphaVantageNewsSource

    source = AlphaVantageNewsSource(client(fake, tmp_path), ["ibm", "AAPL"])
    stories = list(source)
    assert [(s.symbol, s.provider_sentiment) for s in stories] == [("AAPL", -0.38), ("IBM", 0.52)]
    assert len(source.problems) == 2  # the untitled story and the malformed time, skipped
    request = fake.requests[0]
    assert (request["function"], request["tickers"], request["sort"]) == (
        "NEWS_SENTIMENT",
        "IBM,AAPL",
        "LATEST",
    )
    again = list(AlphaVantageNewsSource(client(fake, tmp_path), ["IBM", "AAPL"]))
    assert again == stories and len(fake.requests) == 1  # the day's cache, no second call


def test_news_error_bodies_and_budget_over_http(fake, tmp_path):
    from pipeline_lib.sources.alphavantage import AlphaVantageNewsSource

    with pytest.raises(RateLimitError, match="25 requests per day") as caught:
        list(AlphaVantageNewsSource(client(fake, tmp_path), ["LIMIT"]))
    assert "SECRETKEY" not in str(caught.value)
    with pytest.raises(RateLimitError, match="limit 1"):
        list(AlphaVantageNewsSource(client(fake, tmp_path, limit=1), ["IBM", "AAPL"]))
    with pytest.raises(InvalidRecord):
        list(AlphaVantageNewsSource(client(fake, tmp_path), ["x'; DROP TABLE t;--"]))
    assert len(fake.requests) == 1  # the budget and the symbol check spent no call


def test_prices_and_news_from_alphavantage_merge_in_event_order(fake, tmp_path):
    from pipeline_lib.core.config import Settings
    from pipeline_lib.records.news import News
    from pipeline_lib.sources import source_from_parameters

    settings = Settings.from_env(
        {
            "PIPELINE_HOME": str(tmp_path),
            "ALPHAVANTAGE_API_KEY": "SECRETKEY",
            "ALPHAVANTAGE_BASE_URL": fake.url,
        }
    )
    source = source_from_parameters(settings, source="alphavantage", symbols="ibm", stream="both")
    records = list(source)
    assert [type(r).__name__ for r in records] == ["Tick", "Tick", "Tick", "News"]
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    assert isinstance(records[-1], News) and records[-1].symbol == "IBM"
    assert {q["function"] for q in fake.requests} == {"TIME_SERIES_INTRADAY", "NEWS_SENTIMENT"}
