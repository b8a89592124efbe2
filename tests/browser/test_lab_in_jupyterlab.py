"""A lab as a class meets it: the teacher's release opened in JupyterLab, the student's
parts typed into the cells in Chromium, saved, run, and then graded by the teacher's
command. What the grader reads is the file the browser saved."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import nbformat

from pipeline_lib.labs.grade import grade
from tests.browser.pages import screenshot

# What a student types into each part marked YOUR CODE HERE (the cell's whole text).
TYPED = {
    "def key_for": 'def key_for(tick) -> bytes | None:\n    return tick.symbol.encode("ascii")\n',
    "def partition_for": (
        "from kafka.partitioner.default import murmur2\n\n\n"
        "def partition_for(key: bytes, partitions: int) -> int:\n"
        "    return (murmur2(key) & 0x7FFFFFFF) % partitions\n"
    ),
}


def test_a_student_fills_lab1_in_jupyterlab_and_the_grader_passes_it(
    lab, browser, services, tmp_path
):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    page.add_locator_handler(
        kernel_dialog, lambda: kernel_dialog.get_by_role("button", name="Select").click()
    )
    # A workspace of its own: only this notebook open, whatever other tests left open.
    page.goto(f"{lab}/lab/workspaces/student/tree/labs/lab1_keys.ipynb")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90_000)
    stubs = page.locator(".jp-Cell", has_text="raise NotImplementedError()")
    stubs.nth(1).wait_for(timeout=60_000)  # the editors render after the first cell shows
    assert stubs.count() == 2  # the released notebook: two parts to write
    for start, text in TYPED.items():
        editor = page.locator(".jp-CodeCell", has_text=start).locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(text)  # as typed, without the editor's auto-indent
    page.keyboard.press("Control+s")
    dirty = '.lm-TabBar-tab.jp-mod-dirty[title*="lab1_keys.ipynb"]'
    page.wait_for_selector(dirty, state="detached", timeout=30_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    answer = page.locator(".jp-OutputArea-output", has_text="partitions = {")
    answer.wait_for(timeout=120_000)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
    assert not page.locator(".jp-OutputArea-output[data-mime-type*='error']").count()
    screenshot(page, "lab1_filled_in_jupyterlab")
    page.keyboard.press("Control+s")
    page.close()

    saved = saved_notebook(lab, tmp_path / "lab1_keys.ipynb")
    sources = "\n".join(c.source for c in nbformat.read(saved, as_version=4).cells)
    assert "raise NotImplementedError()" not in sources, sources
    assert 'encode("ascii")' in sources
    result = grade("keys", saved, services, tmp_path / "graded")
    assert result.passed, "\n".join(result.lines())
    assert re.search(r"PASS partitions predicted", "\n".join(result.lines()))
    assert json.loads(json.dumps(result.gradescope()))["score"] == result.max_score


def saved_notebook(url: str, target: Path) -> Path:
    """The notebook as JupyterLab's server has it saved (its contents API)."""
    with urllib.request.urlopen(f"{url}/api/contents/labs/lab1_keys.ipynb?content=1") as answer:
        model = json.load(answer)
    target.write_text(json.dumps(model["content"]))
    return target
