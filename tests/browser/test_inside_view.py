"""The browse widget's "inside" tab in chromium (Voila + Playwright, the fixture of test_browser_voila): pick
the sandbox's demo/pyapp:1.0 (this machine's dpkg database and pip's METADATA), open the tab, see the OS
line and the package count, type in the filter box and see the table narrow to the package typed.

Oracles that are not regexplore: the OS line is this machine's ``/usr/lib/os-release`` (the file the seed put
in the image), the dpkg package count is ``dpkg-query``'s installed packages, the version of ``requests`` is
the one ``importlib.metadata`` reports for the interpreter the seed read it from.
"""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from test_browser_voila import CHROMIUM, CHROMIUM_ARGS, open_app, voila  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _pretty_name() -> str:
    for line in Path("/usr/lib/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError("no PRETTY_NAME in /usr/lib/os-release")


def _installed_debs() -> int:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n"], capture_output=True, text=True,
                         check=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("ii"))


def test_inside_tab_shows_the_os_and_filters_packages(voila: tuple[str, Path],  # noqa: F811 (the fixture)
                                                      registry_sandbox: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _downloads = voila
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = open_app(browser, url, 60_000)
            repos = page.locator(".regexplore-repositories select")
            expect(repos.locator("option")).to_have_count(len(registry_sandbox.seeded.repositories()))
            page.locator(".regexplore-search input").fill("pyapp")
            expect(repos.locator("option")).to_have_count(1)
            repos.select_option(label="demo/pyapp")
            tags = page.locator(".regexplore-tags select")
            expect(tags.locator("option")).to_have_count(1)
            tags.select_option(index=0)
            expect(page.locator(".regexplore-history table tbody tr").first).to_be_visible()

            page.get_by_role("tab", name="inside").click()
            expect(page.locator(".regexplore-inside-os")).to_contain_text(_pretty_name())
            packages = page.locator(".regexplore-inside-packages")
            debs = _installed_debs()
            expect(packages).to_contain_text(re.compile(rf"(\d+) of \1 packages: {debs} deb, \d+ python"))
            expect(page.locator(".regexplore-inside-wasted")).to_contain_text("var/lib/dpkg/status")

            page.locator(".regexplore-inside-filter input").fill("requests")
            rows = packages.locator("table tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text(metadata.version("requests"))
            expect(packages).to_contain_text(re.compile(r"^1 of \d+ packages: 1 python"))

            page.locator(".regexplore-inside-filter input").fill("")
            expect(packages).to_contain_text(re.compile(rf"of \d+ packages: {debs} deb"))
        finally:
            browser.close()
