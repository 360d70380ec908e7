"""The browse widget in a real browser: Voila serves a one-cell notebook with ``rx.browse(...)`` pointed at
the seeded sandbox (URL passed through the environment), Playwright drives Debian's chromium. Type a search,
pick a repository and a tag, see history rows, download, watch the total reach 100 %, check the files.
A screenshot goes to test-artifacts/ (gitignored)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from digests import sha256_digest

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def open_app(browser: Any, url: str, timeout_ms: int) -> Any:
    """A page of the Voila app at ``url`` (1400×1000), with ``timeout_ms`` for its waits and expectations."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    expect.set_options(timeout=timeout_ms)
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


APP = """
import os
import regexplore as rx

browser = rx.browse(os.environ["REGEXPLORE_REGISTRY"], dest=os.environ["REGEXPLORE_DOWNLOADS"])
browser
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def voila(registry_sandbox: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Voila on a free loopback port serving the app notebook; yields (url, downloads folder)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(APP)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    app = tmp_path / "app.ipynb"
    nbformat.write(nb, app)
    downloads = tmp_path / "downloads"
    port = _free_port()
    env = {**os.environ, "REGEXPLORE_REGISTRY": registry_sandbox.url, "REGEXPLORE_DOWNLOADS": str(downloads),
           "REGEXPLORE_CACHE": str(tmp_path / "cache"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "voila.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(app), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--ServerApp.port_retries=0"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited:\n{(tmp_path / 'voila.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "api/status", timeout=2):
                    break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail("voila did not start within 30 s")
                time.sleep(0.2)
        yield url, downloads
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_browse_search_pick_download_in_chromium(voila: tuple[str, Path], registry_sandbox: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, downloads = voila
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = open_app(browser, url, 30_000)
            repos = page.locator(".regexplore-repositories select")
            expect(repos.locator("option")).to_have_count(len(registry_sandbox.seeded.repositories()),
                                                           timeout=60_000)

            page.locator(".regexplore-search input").fill("big")
            expect(repos.locator("option")).to_have_count(1)
            expect(repos.locator("option")).to_have_text("demo/big")
            repos.select_option(label="demo/big")

            tags = page.locator(".regexplore-tags select")
            expect(tags.locator("option")).to_have_count(1)
            expect(tags.locator("option").first).to_contain_text("MiB")       # details arrived
            tags.select_option(index=0)

            rows = page.locator(".regexplore-history table tbody tr")
            expect(rows).to_have_count(len(registry_sandbox.client().history("demo/big:latest")))
            expect(page.locator(".regexplore-history")).to_contain_text("COPY blob.bin")

            page.locator("button.regexplore-download").click()
            progress = page.locator(".regexplore-progress")
            expect(progress).to_contain_text(re.compile(r"total:\s*\d+%"))          # the bars appear …
            expect(progress).to_contain_text(re.compile(r"total:\s*100%"), timeout=60_000)   # … and fill
            expect(progress).to_contain_text(re.compile(r"layer.1:\s*100%"))
            expect(page.locator(".regexplore-status")).to_contain_text("downloaded")
            page.screenshot(path=str(ARTIFACTS / "voila-browse.png"), full_page=True)
        finally:
            browser.close()

    reg = registry_sandbox.client()
    layers = reg.layers("demo/big:latest")
    for digest in layers["digest"]:
        path = downloads / ("sha256-" + digest[7:])
        assert path.is_file(), f"{path.name} was not downloaded"
        assert sha256_digest(path.read_bytes()) == digest
    reg.close()
