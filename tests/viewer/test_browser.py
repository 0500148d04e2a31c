"""The viewer in a real browser: Debian's Chromium (headless, driven by Playwright) against `docrerank view`
serving the model-free run on loopback. Filter, move with the keyboard, make each kind of correction, undo
one, reload and see them kept, export and see them applied; a screenshot of the page view is saved."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.helpers import docrerank_command, invoke_cli

playwright = pytest.importorskip("playwright.sync_api")  # a dev dependency

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(run_copy):
    port = _free_port()
    process = subprocess.Popen([*docrerank_command(), "view", str(run_copy), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/stats", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError(process.stdout.read().decode()) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def browser(chromium):
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _corrections(run) -> list[dict]:
    path = run / "corrections.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_a_person_filters_moves_corrects_undoes_and_the_export_applies_it(
    server, browser, run_copy, vignette_store, tmp_path
):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(server + "/")
    everything = page.locator("table.items tbody tr").count()
    page.select_option("select[name=kind]", "negative")
    page.fill("input[name=q]", "Python")
    page.click("button[type=submit]")
    rows = page.locator("table.items tbody tr")
    assert rows.count() == 1 < everything and "Python package" in rows.first.inner_text()

    page.goto(server + "/review?seed=3&size=3")  # a seeded sample: read each, the page moves on
    sample = []
    for _ in range(2):
        sample.append(page.locator("li.item .query").inner_text())
        with page.expect_event("load"):
            page.keyboard.press("u")
    assert page.url.endswith("/review/3?seed=3&size=3") and " read" in page.inner_text(".pager")
    page.goto(server + "/review?seed=3&size=3")
    assert page.locator("li.item .query").inner_text() == sample[0]  # the same seed, the same sample
    reviewed = [c for c in _corrections(run_copy) if c["by"] == "review"]
    assert [c["query"] for c in reviewed] == sample and {c["action"] for c in reviewed} == {"unanswerable"}

    page.goto(server + "/page/1")
    page.keyboard.press("ArrowRight")
    page.wait_for_url("**/page/2**")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/page/1**")

    def item(text: str):
        return page.locator("li.item", has_text=text)

    def act(text: str, key: str) -> None:  # select the query with the arrow keys, then press the key
        ids = page.eval_on_selector_all("li.item", "items => items.map(i => i.id)")
        target = item(text).first.get_attribute("id")
        for _ in range(len(ids)):
            current = page.evaluate("document.querySelector('li.item.selected').id")
            if current == target:
                break
            page.keyboard.press("ArrowDown" if ids.index(target) > ids.index(current) else "ArrowUp")
        with page.expect_event("load"):  # the page reloads once the correction is saved
            page.keyboard.press(key)

    python = "Which Python package implements"
    act(python, "a")  # a kept negative the page answers after all
    logistic = "in logistic regression models"
    act(logistic, "d")  # dropped
    page.once("dialog", lambda dialog: dialog.accept("Which R package tests for structural change in linear models?"))
    act("Which R package implements tests for structural change in linear regression models?", "e")
    page.goto(server + "/page/2")
    rejected = page.locator("li.item.negative.rejected").first
    rejected_text = rejected.locator(".query").inner_text().strip()
    with page.expect_event("load"):
        rejected.locator("button[data-action=unanswerable]").click()  # a rejected negative kept after all

    page.goto(server + "/page/1")
    dropped = item(logistic)
    with page.expect_event("load"):
        dropped.locator("button.undo").click()  # the drop taken back
    page.reload()
    assert item(python).locator(".correction").last.inner_text().startswith("person: answerable")
    assert item(logistic).locator(".correction").count() == 0  # undone
    assert "(undone)" in page.locator("ol.history").inner_text()
    assert page.locator(".correction", has_text="edit").count() == 1
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=False)
    assert (tmp_path / "viewer.png").stat().st_size > 20_000
    page.goto(server + "/stats")
    assert "5 in force of 7 made" in page.inner_text("main")  # the drop and its undo are history

    actions = [c["action"] for c in _corrections(run_copy) if c["by"] == "person"]
    assert actions == ["answerable", "drop", "edit", "unanswerable", "undo"]
    out = tmp_path / "export"
    result = invoke_cli("export", run_copy, "--pages", vignette_store.root, "--out", out, "--format", "jsonl")
    assert result.exit_code == 0, result.stdout
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    negatives = {n["text"]: n for row in rows for n in row["negatives"]}
    assert not any(python in text for text in negatives)
    assert any(logistic in text for text in negatives)
    assert negatives[rejected_text]["corrected"] == "unanswerable"
    assert any(row["query"] == "Which R package tests for structural change in linear models?" for row in rows)
