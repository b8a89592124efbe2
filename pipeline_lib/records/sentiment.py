"""Headline sentiment, offline: VADER plus a small finance lexicon kept here.

VADER (``vaderSentiment`` on PyPI, lexicon shipped in the wheel, nothing downloaded at
run time) handles negation ("does not miss"), intensifiers ("sharply") and
punctuation, but its general-purpose lexicon does not know that *beats*, *upgrade* or
*recall* carry sentiment in market news. :data:`FINANCE_LEXICON` adds those words
with weights on VADER's scale (-4 … +4, where VADER's own "good" is 1.9 and "bad"
-2.5). The result is VADER's compound score in [-1, 1] and a label with VADER's usual
thresholds (±0.05).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

# Market-news words and their weights (VADER scale). Inflected forms are listed
# because VADER matches whole lower-case tokens.
# fmt: off
FINANCE_LEXICON: dict[str, float] = {
    # results against expectations
    "beat": 2.0, "beats": 2.0, "tops": 1.5, "exceeds": 1.8, "exceeded": 1.8,
    "misses": -2.0, "missed": -2.0, "shortfall": -2.0,
    # analyst actions
    "upgrade": 2.0, "upgrades": 2.0, "upgraded": 2.0, "outperform": 1.8,
    "downgrade": -2.0, "downgrades": -2.0, "downgraded": -2.0, "underperform": -1.8,
    "overweight": 1.2, "underweight": -1.2,
    # outlook
    "raises": 1.2, "raised": 1.2, "lifts": 1.2, "boosts": 1.5,
    "lowers": -1.2, "lowered": -1.2, "cuts": -1.5, "slashes": -2.2, "withdraws": -1.5,
    "guidance": 0.0, "outlook": 0.0,
    # price moves
    "surges": 2.2, "surge": 2.2, "soars": 2.5, "jumps": 1.5, "rallies": 2.0, "rally": 2.0,
    "rebounds": 1.5, "climbs": 1.2, "gains": 1.5,
    "soar": 2.5, "jump": 1.5, "climb": 1.2, "gain": 1.5, "rebound": 1.5,
    "plunges": -2.5, "plunge": -2.5, "tumbles": -2.2, "slumps": -2.2, "sinks": -2.0,
    "slides": -1.5, "falls": -1.2, "drops": -1.2, "selloff": -2.0, "fades": -1.2,
    "tumble": -2.2, "slump": -2.2, "sink": -2.0, "slide": -1.5, "fall": -1.2,
    "drop": -1.2,
    # company events
    "record": 1.0, "profit": 1.5, "profits": 1.5, "dividend": 1.0, "buyback": 1.5,
    "approval": 1.8, "approved": 1.5, "expands": 1.0, "wins": 1.8, "contract": 0.5,
    "recall": -2.2, "recalls": -2.2, "lawsuit": -2.0, "lawsuits": -2.0, "sues": -1.8,
    "sued": -1.8, "probe": -1.8, "investigation": -1.5, "subpoena": -1.8,
    "layoffs": -2.0, "layoff": -2.0, "bankruptcy": -3.2, "default": -2.5,
    "delisting": -2.8, "writedown": -2.0, "losses": -1.8, "loss": -1.5,
    "halted": -1.8, "outage": -1.8, "breach": -2.2, "fined": -2.0,
    # neutral in markets though VADER scores them
    "share": 0.0, "shares": 0.0, "stock": 0.0, "crude": 0.0, "volatile": -0.5,
}
# fmt: on


class Sentiment(NamedTuple):
    """VADER's compound score in [-1, 1] and its label."""

    compound: float
    label: str  # positive | negative | neutral


@functools.cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(FINANCE_LEXICON)
    return analyzer


def label_of(compound: float) -> str:
    if compound >= 0.05:
        return "positive"
    if compound <= -0.05:
        return "negative"
    return "neutral"


def score(text: str) -> Sentiment:
    """Sentiment of one headline (or any short text)."""
    compound = float(_analyzer().polarity_scores(text)["compound"])
    return Sentiment(round(compound, 4), label_of(compound))
