"""The AlphaVantage key never leaves the process, whatever a server echoes back.

Every error path of the AlphaVantage client is fed an answer that echoes the
request URL (key included); the key must appear in no exception, log line, or
command output. The notebook tier checks executed notebooks and HTML exports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback

import pytest

from pipeline_lib.core.errors import PipelineError
from pipeline_lib.core.secrets import mask
from pipeline_lib.sources.alphavantage import AlphaVantageClient, parse_intraday
from tests.fixtures.alphavantage import ECHO_MODES, EchoingServer

KEY = "S3CRET-KEY-4711"


@pytest.fixture(scope="module")
def echo():
    with EchoingServer() as server:
        yield server


@pytest.mark.parametrize("mode", ECHO_MODES)
def test_no_error_path_shows_the_key(echo, tmp_path, caplog, mode):
    echo.mode = mode
    client = AlphaVantageClient(KEY, echo.url, cache_dir=tmp_path, timeout=5)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PipelineError) as caught:
        parse_intraday(client.intraday("IBM"), "IBM")
    shown = "".join(traceback.format_exception(caught.value))
    assert KEY not in shown, shown
    assert KEY not in caplog.text


@pytest.mark.parametrize("mode", ["not-json", "json-list", "reset", "bad-number"])
def test_the_command_line_reports_one_line_without_the_key(echo, tmp_path, mode):
    echo.mode = mode
    env = {
        **os.environ,
        "ALPHAVANTAGE_API_KEY": KEY,
        "ALPHAVANTAGE_BASE_URL": echo.url,
        "PIPELINE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "sample", "--source", "alphavantage"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert KEY not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ")


def test_mask_covers_registered_environment_and_url_encoded_forms(monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "a b+c/d")
    text = "k=a b+c/d url=https://x/q?apikey=a+b%2Bc%2Fd&x=1 other=a%20b%2Bc%2Fd"
    assert "b+c" not in mask(text) and "%2B" not in mask(text)
    assert mask("https://x/q?symbol=IBM&apikey=ZZZ&y=2") == "https://x/q?symbol=IBM&apikey=***&y=2"
