from pipeline_lib import cli
from pipeline_lib.schema import decode


def run_sample(capsysbinary, *args):
    assert cli.main(["sample", *args]) == 0
    return capsysbinary.readouterr().out.splitlines()


def test_sample_prints_valid_json_lines(capsysbinary):
    lines = run_sample(capsysbinary, "--max-records", "6", "--seed", "3", "--symbols", "AAPL,IBM")
    ticks = [decode(line) for line in lines]
    assert len(ticks) == 6
    assert [t.symbol for t in ticks[:2]] == ["AAPL", "IBM"]


def test_sample_is_deterministic_with_a_seed(capsysbinary):
    first = [
        decode(x).close for x in run_sample(capsysbinary, "--max-records", "50", "--seed", "9")
    ]
    second = [
        decode(x).close for x in run_sample(capsysbinary, "--max-records", "50", "--seed", "9")
    ]
    assert first == second


def test_sample_csv(capsysbinary):
    ticks = [decode(x) for x in run_sample(capsysbinary, "--source", "csv", "--max-records", "3")]
    assert [t.source for t in ticks] == ["csv"] * 3


def test_alphavantage_without_key_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("ALPHAVANTAGE_API_KEY", raising=False)
    monkeypatch.setenv("PIPELINE_HOME", "/tmp/pipeline-unit-home")
    assert cli.main(["sample", "--source", "alphavantage", "--max-records", "1"]) == 2
    assert "ALPHAVANTAGE_API_KEY is not set" in capsys.readouterr().err
