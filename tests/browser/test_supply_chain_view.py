"""The browse widget's "supply chain" tab in chromium (Voila + Playwright, the fixture of test_browser_voila).

This module gives that fixture its own real registry (``registry_sandbox`` is overridden here, so the session's
seeded sandbox stays as the other tests expect it): the recorded alpine 3.23.2 buildkit index (SBOM and SLSA
provenance attestations), a single image with an SPDX SBOM attached by ``reg.attach`` (OCI 1.1 subject, kept
in the ``sha256-<hex>`` referrers tag by distribution 2.8) with a note attached to the SBOM (a referrer of a
referrer), and a cosign ``.sig`` signature made with a fresh key. The tab must show the tree
with the nested referrer indented under its subject, the signatures found and then verified once the public
key's path is typed, and the attestations' predicate types and provenance builder of the recorded statements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cosignkit as ck
import pytest
from servers import push_tiny_image
from test_browser_voila import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, open_app, voila  # noqa: F401 (the fixture)

import regexplore as rx
from regexplore.sandbox import LocalRegistry

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


class _Signed(LocalRegistry):
    """A LocalRegistry that also remembers what the test put in it."""

    key_path: Path
    facts: dict[str, Any]


@pytest.fixture(scope="module")
def registry_sandbox(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Signed]:
    """Overrides the session fixture for ``voila``: a registry holding signed and attested content."""
    folder = tmp_path_factory.mktemp("supply")
    with _Signed() as server:
        ck.push_attested_index(server.url, shared_dir, "att/alpine")
        img = push_tiny_image(server.url, "signed/app", "v1")
        spdx = folder / "sbom.spdx.json"
        spdx.write_text(json.dumps(ck.statement_predicate(shared_dir, ck.SBOM["linux/amd64"])))
        key = ck.new_key()
        with rx.Registry(server.url) as reg:
            sbom = reg.attach("signed/app:v1", [(str(spdx), "application/spdx+json")],
                              artifact_type="application/spdx+json")
            payload = ck.payload(img.digest, f"{server.host}/signed/app")
            ck.push_signatures(server.url, "signed/app", img.digest, [(payload, ck.sign(key, payload))])
            sig = reg.manifest(f"signed/app:sha256-{img.digest[7:]}.sig").digest
            note = folder / "note.txt"   # a note on the SBOM: a referrer of a referrer
            note.write_text("reviewed")
            nested = reg.attach(f"signed/app@{sbom}", [(str(note), "text/plain")], artifact_type="text/plain")
        server.key_path = folder / "cosign.pub"
        server.key_path.write_bytes(ck.public_pem(key))
        server.facts = {"image": img.digest, "sbom": sbom, "sig": sig, "nested": nested}
        yield server


def _open(page: Any, repo: str, tag: str) -> None:
    from playwright.sync_api import expect

    repos = page.locator(".regexplore-repositories select")
    expect(repos.locator("option")).to_have_count(2)
    repos.select_option(label=repo)
    expect(page.locator(".regexplore-status")).to_have_text(re.compile(rf"\d+ tags in {repo}$"))  # details in
    tags = page.locator(".regexplore-tags select")
    option = tags.locator("option").filter(has_text=re.compile(rf"^\s*{re.escape(tag)}(\s|$)"))
    expect(option).to_have_count(1)
    tags.select_option(value=option.get_attribute("value"))
    expect(page.locator(".regexplore-status")).to_contain_text(f"{repo}:{tag}: ")   # the image is shown


def _indent(node: Any) -> float:
    return float(node.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)"))


def test_supply_chain_tab_shows_referrers_signatures_and_attestations(
        voila: tuple[str, Path], registry_sandbox: _Signed, shared_dir: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    url, _downloads = voila
    facts = registry_sandbox.facts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = open_app(browser, url, 60_000)
            _open(page, "signed/app", "v1")
            page.get_by_role("tab", name="supply chain").click()

            tree = page.locator(".regexplore-supply-referrers")
            expect(tree).to_contain_text("referrers of the image")
            nodes = tree.locator(".regexplore-supply-node")
            expect(nodes).to_have_count(3)   # the SBOM, the note on it, the .sig tag
            texts = nodes.all_inner_texts()
            order = [next(k for k in ("sbom", "sig", "nested") if facts[k][:19] in t) for t in texts]
            assert order == ["sbom", "nested", "sig"], texts    # the note under its subject (not level by level) …
            assert "application/spdx+json" in texts[0] and "text/plain" in texts[1] and "cosign-tag" in texts[2]
            assert _indent(nodes.nth(1)) > _indent(nodes.nth(0)) == _indent(nodes.nth(2))  # … and indented

            signatures = page.locator(".regexplore-supply-signatures")
            expect(signatures).to_contain_text("1 signature found")
            page.locator(".regexplore-supply-key input").fill(str(registry_sandbox.key_path))
            page.locator(".regexplore-supply-key input").press("Enter")
            expect(signatures).to_contain_text(f"1 signature, 1 verified with {registry_sandbox.key_path}")
            expect(signatures.locator("table tbody tr")).to_contain_text("cosign .sig")
            expect(page.locator(".regexplore-supply-attestations")).to_contain_text("no buildkit attestation")
            page.screenshot(path=str(ARTIFACTS / "voila-supply-signed.png"), full_page=True)

            _open(page, "att/alpine", "3.23.2")
            attestations = page.locator(".regexplore-supply-attestations")
            for platform in ck.PROVENANCE:
                kinds = ", ".join(([ck.SPDX] if platform in ck.SBOM else []) + [ck.PROV])
                expect(attestations).to_contain_text(f"{platform}: {kinds}")
            builder = ck.statement_predicate(shared_dir, ck.PROVENANCE["linux/amd64"])["builder"]["id"]
            expect(attestations).to_contain_text(f"provenance (linux/amd64): builder {builder}")
            expect(page.locator(".regexplore-supply-signatures")).to_contain_text("no cosign signature")
            page.screenshot(path=str(ARTIFACTS / "voila-supply-attested.png"), full_page=True)
        finally:
            browser.close()
