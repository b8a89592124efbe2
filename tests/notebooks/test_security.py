"""06_security run headless by papermill on the broker in secure mode, then inspected."""

from __future__ import annotations

import nbformat

from pipeline_lib.cli.flow import SECURITY, run_notebook
from pipeline_lib.local import secure


def test_the_lesson_shows_who_connects_and_each_refusal_in_one_line(secure_settings, tmp_path):
    notebook, html = run_notebook(SECURITY, secure_settings, {}, output_dir=tmp_path)
    cells = nbformat.read(notebook, as_version=4).cells
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "".join(o.get("data", {}).get("text/html", "") for o in outputs)

    assert "SASL_SSL: encrypted" in shown and "as User:analyst (SCRAM-SHA-512)" in shown
    assert "DENY" in shown and "analyst*" in shown  # the ACLs, read back from the broker
    topic = secure_settings.topic
    assert f"the ACL missing is ALLOW WRITE on TOPIC {topic} for User:analyst" in shown
    assert "ALLOW READ on GROUP analyst-lesson-" in shown  # the pipeline in the analyst's
    assert "ALLOW READ on GROUP lesson-" in shown  # the analyst in the pipeline's
    assert shown.count("joined;") == 2  # each in a group of its own
    assert "refused the login of user 'pipeline'" in shown
    assert "speaks TLS and this client PLAINTEXT" in shown
    assert "asks for a SASL login" in shown

    written = notebook.read_text() + html.read_text()
    for user in secure.USERS:
        assert secure.local_password(secure_settings.home, user) not in written
    assert "not-the-password" not in written
