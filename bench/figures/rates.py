"""What one core does alone, no services: the simulator's and the sentiment scorer's rates."""

from __future__ import annotations

import time

from bench.services import START, count_for, rate_of
from pipeline_lib.records.schema import encode
from pipeline_lib.sources.csv_replay import CsvReplay
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig


def simulator_rate(size: str) -> dict:
    """Records per second the simulator yields on one core (goal: >= 200,000).

    Side by side: the same records also JSON-encoded (what the producer does next),
    and CSV replay (parse + validate every row of the sample).
    """
    n = count_for(size, 1_000_000, 2_000)
    config = SimulatorConfig(seed=1, start=START)
    sim = rate_of(MarketSimulator(config), n)
    sim_encoded = rate_of(map(encode, MarketSimulator(config)), n)
    csv_rows = len(CsvReplay())
    csv = rate_of(CsvReplay(), csv_rows)
    return {
        "name": "simulator_rate",
        "records": n,
        "simulator_records_per_s": round(sim),
        "simulator_plus_json_records_per_s": round(sim_encoded),
        "csv_replay_records_per_s": round(csv),
        "goal": ">= 200,000 records/s",
        "met": sim >= 200_000,
    }


def sentiment_rate(size: str) -> dict:
    """Headlines scored per second on one core (VADER + the finance lexicon), side by
    side with the news simulator's stories per second (scoring included)."""
    from pipeline_lib.records.sentiment import score
    from pipeline_lib.sources.news_simulator import BACKGROUND, NEGATIVE, POSITIVE, NewsSimulator

    n = count_for(size, 50_000, 500)
    names = ("Apple", "Johnson & Johnson", "Exxon Mobil", "Nvidia")
    headlines = [t.format(co=c) for t in (*POSITIVE, *NEGATIVE, *BACKGROUND) for c in names]
    score(headlines[0])  # load the lexicon before the clock starts
    started = time.perf_counter()
    for i in range(n):
        score(headlines[i % len(headlines)])
    scored_per_s = n / (time.perf_counter() - started)
    symbols = ["AAPL", "MSFT", "GOOGL", "META", "NVDA", "AMZN", "KO", "JPM", "XOM", "JNJ"]
    stories = rate_of(NewsSimulator(symbols, 1, START), max(200, n // 10))
    return {
        "name": "sentiment_rate",
        "headlines": n,
        "headlines_scored_per_s": round(scored_per_s),
        "simulated_stories_per_s": round(stories),
        "goal": ">= 5,000 headlines/s on one core (AlphaVantage sends at most 1,000 per call)",
        "met": scored_per_s >= 5_000,
    }
