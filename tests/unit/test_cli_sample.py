from pipeline_lib import cli
from pipeline_lib.records.schema import decode


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


def test_same_seed_and_start_give_a_byte_identical_stream(capsysbinary):
    args = ("--max-records", "40", "--seed", "9", "--start", "2024-01-02T14:30:00Z")
    first, second = run_sample(capsysbinary, *args), run_sample(capsysbinary, *args)
    assert first == second
    assert decode(first[0]).ts.isoformat() == "2024-01-02T14:30:00+00:00"
    later = run_sample(capsysbinary, "--max-records", "40", "--seed", "9", "--start", "2024-01-03")
    assert later != first


def test_notebook_and_command_line_parameters_build_the_same_source():
    import itertools

    from pipeline_lib.core.config import Settings
    from pipeline_lib.records.schema import encode
    from pipeline_lib.sources import source_from_parameters

    settings = Settings.from_env({"PIPELINE_HOME": "/tmp/pipeline-unit-home"})
    args = cli.build_parser().parse_args(
        ["sample", "--seed", "4", "--symbols", " aapl, msft", "--start", "2024-01-02T15:00:00"]
    )
    from_cli = cli.source_from_args(settings, args)
    from_notebook = source_from_parameters(
        settings, symbols="AAPL,MSFT", seed=4, start="2024-01-02T15:00:00+00:00"
    )
    first = [encode(t) for t in itertools.islice(from_cli, 20)]
    assert first == [encode(t) for t in itertools.islice(from_notebook, 20)]
    assert {t.split(b'"symbol":"')[1][:4] for t in first} == {b"AAPL", b"MSFT"}


def test_status_names_the_service_that_is_down_not_all_of_them(monkeypatch):
    from pipeline_lib import local
    from pipeline_lib.analysis import monitor
    from pipeline_lib.core.config import Settings
    from pipeline_lib.local.process import ServiceStatus

    def fake_status(settings):
        return [
            ServiceStatus("kafka", True, 1, {}, "k", "log", "data", "ready"),
            ServiceStatus("gcs", True, 2, {}, "g", "log", "data", "ready"),
            ServiceStatus("bigquery", False, None, {}, "b", "log", "data", "stopped"),
        ]

    monkeypatch.setattr(local, "status", fake_status)
    monkeypatch.setattr(
        monitor, "kafka_summary", lambda settings, stream="ticks": {"exists": False}
    )
    document = cli.status_document(Settings.from_env({"PIPELINE_HOME": "/tmp/unit-home"}))
    assert document["kafka"] == {"exists": False}
    assert "not running" in document["bigquery"]["error"]
