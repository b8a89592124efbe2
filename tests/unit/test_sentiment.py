"""Headline scoring: the sign is right on finance wording, negation and intensifiers."""

import pytest

from pipeline_lib.records.sentiment import FINANCE_LEXICON, score

# Written for this test: (headline, expected label).
HEADLINES = [
    ("Apple beats earnings estimates on record iPhone revenue", "positive"),
    ("Microsoft tops forecasts and raises full-year guidance", "positive"),
    ("Analyst upgrades Nvidia to outperform", "positive"),
    ("JPMorgan announces $30 billion buyback and higher dividend", "positive"),
    ("Pfizer wins FDA approval for new vaccine", "positive"),
    ("Amazon shares surge after strong holiday sales", "positive"),
    ("Caterpillar stock rallies as orders rebound", "positive"),
    ("Exxon profit soars on higher crude prices", "positive"),
    ("Coca-Cola lifts outlook, beats on volume", "positive"),
    ("Meta's ad revenue exceeds expectations, shares jump", "positive"),
    ("Apple misses revenue estimates as iPhone sales slump", "negative"),
    ("Analyst downgrades Microsoft to underperform", "negative"),
    ("Nvidia cuts guidance amid export restrictions", "negative"),
    ("Johnson & Johnson recalls baby powder", "negative"),
    ("Pfizer faces lawsuit over drug side effects", "negative"),
    ("Amazon announces layoffs of 10,000 workers", "negative"),
    ("JPMorgan shares plunge after trading losses", "negative"),
    ("SEC opens probe into Meta accounting", "negative"),
    ("Exxon fined over refinery breach", "negative"),
    ("Caterpillar stock tumbles as demand sinks", "negative"),
    ("Apple does not miss estimates this quarter", "positive"),
    ("Microsoft's results were not bad at all", "positive"),
    ("Analysts are not impressed by Nvidia's results", "negative"),
    ("Amazon shares surge on incredibly strong earnings", "positive"),
    ("Pfizer stock plunges after an extremely bad trial result", "negative"),
    ("Apple to hold annual shareholder meeting on March 1", "neutral"),
    ("Microsoft schedules earnings call for Tuesday", "neutral"),
    ("Nvidia shares change hands in pre-market trading", "neutral"),
    ("JPMorgan names new chief financial officer", "neutral"),
    ("Coca-Cola to report quarterly results next week", "neutral"),
    ("Exxon stock closes at 115 dollars", "neutral"),
    ("Caterpillar shares trade flat at midday", "neutral"),
]


@pytest.mark.parametrize(("headline", "label"), HEADLINES)
def test_headline_sign(headline, label):
    result = score(headline)
    assert result.label == label, (headline, result)
    assert -1 <= result.compound <= 1


def test_negation_flips_the_finance_words():
    assert score("Apple beats estimates").compound > 0.3
    assert score("Apple misses estimates").compound < -0.3
    assert score("Apple does not miss estimates").compound > 0


def test_intensifiers_and_emphasis_strengthen():
    assert score("Demand is extremely weak").compound < score("Demand is weak").compound < 0
    assert score("Apple shares plunge!!!").compound < score("Apple shares plunge").compound < 0


def test_lexicon_weights_stay_on_vaders_scale():
    assert all(-4 <= weight <= 4 for weight in FINANCE_LEXICON.values())
    assert all(word == word.lower() and " " not in word for word in FINANCE_LEXICON)


def test_sentiment_command_prints_one_json_line_per_text(capsys):
    import json

    from pipeline_lib import cli

    assert cli.main(["sentiment", "Apple beats estimates", "Pfizer recalls a drug"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["positive", "negative"]
    assert lines[0]["text"] == "Apple beats estimates" and lines[0]["compound"] > 0
