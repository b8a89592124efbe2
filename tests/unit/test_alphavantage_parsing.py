from datetime import UTC, datetime

import pytest

from pipeline_lib.sources.alphavantage import (
    AlphaVantageError,
    PremiumEndpointError,
    RateLimitError,
    parse_global_quote,
    parse_intraday,
    raise_for_error_body,
)
from tests.fixtures.alphavantage import (
    ERROR_MESSAGE,
    GLOBAL_QUOTE_IBM,
    INTRADAY_IBM,
    OLD_NOTE,
    PREMIUM_ONLY,
    RATE_LIMIT_DAILY,
    RATE_LIMIT_INFORMATION,
)


def test_intraday_bars_oldest_first_in_utc():
    bars = parse_intraday(INTRADAY_IBM, "IBM")
    assert [b.ts for b in bars] == [
        datetime(2024, 1, 5, 20, 50, tzinfo=UTC),  # 15:50 US/Eastern (EST, UTC-5)
        datetime(2024, 1, 5, 20, 55, tzinfo=UTC),
        datetime(2024, 1, 5, 21, 0, tzinfo=UTC),
    ]
    last = bars[-1]
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        159.16,
        159.2,
        159.0,
        159.16,
        125000,
    )
    assert last.source == "alphavantage" and last.symbol == "IBM"
    assert len({b.event_id for b in bars}) == 3


def test_global_quote_is_a_bar_stamped_at_fetch_time():
    fetched = datetime(2024, 1, 5, 20, 0, 7, tzinfo=UTC)
    tick = parse_global_quote(GLOBAL_QUOTE_IBM, fetched_at=fetched)
    assert tick.ts == fetched and tick.close == 159.16 and tick.volume == 4_012_345
    assert tick.low <= tick.open <= tick.high


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        (ERROR_MESSAGE, AlphaVantageError, "Invalid API call"),
        (RATE_LIMIT_INFORMATION, PremiumEndpointError, "premium"),
        (RATE_LIMIT_DAILY, RateLimitError, "25 requests per day"),
        (PREMIUM_ONLY, PremiumEndpointError, "premium endpoint"),
        (OLD_NOTE, RateLimitError, "call frequency"),
    ],
)
def test_every_error_body_becomes_a_clear_exception(body, error, text):
    with pytest.raises(error, match=text):
        raise_for_error_body(body)


def test_key_in_an_error_body_is_masked():
    with pytest.raises(AlphaVantageError) as caught:
        raise_for_error_body(RATE_LIMIT_INFORMATION, key="SECRETKEY")
    assert "SECRETKEY" not in str(caught.value)


def test_unexpected_shapes_are_errors_not_crashes():
    with pytest.raises(AlphaVantageError, match="Time Series"):
        parse_intraday({"Meta Data": {}}, "IBM")
    with pytest.raises(AlphaVantageError, match="Global Quote"):
        parse_global_quote({"Global Quote": {}})
