"""The browse widget at the edges a user meets: a refused catalog (type the repository name instead),
v1 registries, schema1 images, cancelling midway, stale errors and a platform switch while loading.
No browser: set values, click buttons, wait for the background threads (as tests/test_widgets.py)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_widgets import ManualExecutor  # queues background work until the test runs it
from test_widgets import choose as widgets_choose

import regexplore as rx
from regexplore.jupyter import RegistryBrowser
from regexplore.jupyter import progress as widget_progress
from regexplore.sandbox import LocalRegistry, seed
from regexplore.sandbox.v1server import LocalV1Registry

PASSWORD = "edge-PW-7731-secret"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def reg(registry_sandbox: Any) -> Iterator[Any]:
    client = registry_sandbox.client()
    yield client
    client.close()


def choose(browser: RegistryBrowser, repository: str, tag: str | None = None) -> RegistryBrowser:
    """As tests/test_widgets.py's, typing the whole name (what a refused catalog needs)."""
    return widgets_choose(browser, repository, tag, search=repository)


def widget_text(browser: RegistryBrowser) -> str:
    def walk(w: Any) -> Iterator[Any]:
        yield w
        for child in getattr(w, "children", ()) or ():
            yield from walk(child)
    return " ".join(f"{getattr(w, 'value', '')} {getattr(w, 'options', '')}" for w in walk(browser)) \
        + str(browser.value) + str(browser.error)


def test_refused_catalog_still_opens_a_typed_repository() -> None:
    content = seed.demo_content().only("demo/busybox")
    with LocalRegistry(seed=content, auth=("u", PASSWORD)) as sandbox:
        anonymous = rx.Registry(sandbox.url, auth=None)
        browser = rx.browse(anonymous).wait()
        assert browser.error.startswith("Unauthorized: 401 UNAUTHORIZED") and "\n" not in browser.error
        browser.search.value = "demo/busybox"                  # the catalog said nothing: offer the name
        assert browser.repositories.options == ("demo/busybox",)
        assert "401 UNAUTHORIZED" in browser.status.value       # the registry's reason stays visible
        browser.repositories.value = "demo/busybox"
        browser.wait()
        assert browser.error.startswith("Unauthorized: 401") and "tags of demo/busybox" in browser.error
        browser.close()

        authed = sandbox.client()
        browser = rx.browse(authed).wait()
        choose(browser, "demo/busybox", "1.0")
        assert browser.error is None and browser.value["tag"] == "1.0"
        assert PASSWORD not in widget_text(browser)
        browser.close()
        authed.close()


def test_token_registry_denying_the_catalog_scope(tmp_path: Path) -> None:
    from servers import TokenServer

    with LocalRegistry(storage=tmp_path / "storage") as plain:
        seed.push(seed.demo_content().only("demo/busybox"), plain.client())
    users = {"alice": (PASSWORD, {"repository:demo/*": "pull"})}          # no registry:catalog:*
    with TokenServer(users=users, anonymous={}) as ts, \
            LocalRegistry(storage=tmp_path / "storage", token=ts.registry_config()) as sandbox:
        client = rx.Registry(sandbox.url, auth=("alice", PASSWORD))
        browser = rx.browse(client).wait()
        assert "_catalog" in browser.error
        choose(browser, "demo/busybox", "latest")
        assert browser.error is None
        assert browser.value["digest"] == client.manifest("demo/busybox:latest").digest
        browser.search.value = "demo/nothere"                      # a 404 typed by hand: one line
        browser.repositories.value = "demo/nothere"
        browser.wait()
        assert browser.error.startswith("NotFound: 404 NAME_UNKNOWN") and "\n" not in browser.error
        browser.search.value = "not a name!"
        assert browser.repositories.options == ()
        assert PASSWORD not in widget_text(browser)
        browser.close()
        client.close()


@pytest.mark.parametrize("api", ["v1", "auto"])
def test_v1_registry_lists_tags_history_and_downloads(api: str, tmp_path: Path) -> None:
    with LocalV1Registry(seed=True, users={"demo": PASSWORD}) as srv:
        client = rx.Registry(srv.url, api=api, auth=srv.credentials)
        browser = rx.browse(client).wait()
        assert browser.error is None and browser.repositories.options == ("demo/busybox",)   # from search
        choose(browser, "demo/busybox", "latest")
        assert [v for _, v in browser.tags.options] == ["1.0", "latest"]
        assert browser.error is None, browser.error
        assert len(browser.history) == 3 and "hello from the v1 protocol" in browser.history_html.value
        assert browser.value["digest"] is None and not browser.download_button.disabled
        browser.dest.value = str(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            browser.download_button.click()
            browser.wait()
        assert browser.error is None and len(browser.downloaded) == 3 and "downloaded" in browser.status.value
        layer_bars = [b for k, b in browser.bars.items() if k != "total"]   # one per v1 layer, filled
        assert len(layer_bars) == 3 and all(b.n == b.total and b.total for b in layer_bars)
        assert browser.bars["total"].n == sum(p.stat().st_size for p in browser.downloaded)
        browser.tabs.selected_index = 2                              # files: not in v1, one line, no spinner
        browser.wait()
        assert "v1" in browser.error and "\n" not in browser.error and browser.files_html.value == ""
        assert PASSWORD not in widget_text(browser)
        browser.close()
        client.close()


def test_schema1_image_without_layer_sizes_downloads(tmp_path: Path) -> None:
    from regexplore.model.oci import SCHEMA1_SIGNED

    with LocalRegistry(seed=seed.demo_content().only("demo/busybox"),
                       extra_config={"compatibility": {"schema1": {"enabled": True}}}) as sandbox:
        client = sandbox.client()
        signed = client.v2.get_manifest("demo/busybox", "1.0", accept=SCHEMA1_SIGNED)   # converted, signed
        client.transport.request("PUT", "/v2/demo/busybox/manifests/old", data=signed.raw,
                                 headers={"Content-Type": SCHEMA1_SIGNED}, ok=(201,))
        browser = choose(rx.browse(client).wait(), "demo/busybox", "old")
        assert browser.error is None and browser.layers["size"].isna().all()
        assert "size unknown" in browser.image_title.value
        browser.dest.value = str(tmp_path)
        browser.download_button.click()                   # used to raise TypeError in the click handler
        browser.wait()
        assert browser.error is None, browser.error
        assert len(browser.downloaded) == 2 and all(Path(p).exists() for p in browser.downloaded)
        total = browser.bars["total"]
        assert total.total == total.n == sum(Path(p).stat().st_size for p in set(browser.downloaded))
        browser.close()
        client.close()


def test_cancel_midway_leaves_no_partial_file_and_a_later_download_works(
        reg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    browser = choose(rx.browse(reg).wait(), "demo/big", "latest")
    browser.dest.value = str(tmp_path)
    original = widget_progress.DownloadProgress.__call__

    def press_cancel_after_a_megabyte(self: Any, event: Any) -> None:
        if event.bytes_done > 2**20 and not self.cancel.is_set():
            browser.cancel_button.click()
        original(self, event)

    monkeypatch.setattr(widget_progress.DownloadProgress, "__call__", press_cancel_after_a_megabyte)
    browser.download_button.click()
    browser.wait(60)
    assert "download cancelled" in browser.status.value and browser.error is None
    assert browser.downloaded == [] and browser.cancel_button.disabled
    assert not browser.download_button.disabled
    big = browser.layers["digest"].iloc[-1]
    assert not list(tmp_path.glob("*.partial"))
    assert not (tmp_path / ("sha256-" + big[7:])).exists()

    monkeypatch.setattr(widget_progress.DownloadProgress, "__call__", original)
    browser.download_button.click()
    browser.wait(60)
    assert browser.error is None and (tmp_path / ("sha256-" + big[7:])).exists()
    assert "downloaded" in browser.status.value
    browser.close()


def test_an_old_error_does_not_outlive_a_later_success(reg: Any) -> None:
    browser = rx.browse(reg).wait()
    browser.search.value = "demo/multiarch"
    browser.repositories.value = "demo/multiarch"
    browser.wait()
    browser._run("tags", lambda: 1 / 0, lambda _: None).exception()    # a failure shown in the widget
    browser.wait()
    assert browser.error.startswith("ZeroDivisionError")
    browser.search.value = "demo/busybox"
    browser.repositories.value = "demo/busybox"        # another repository's tags arrive fine
    browser.wait()
    assert "3 tags in demo/busybox" in browser.status.value
    assert browser.error is None                       # .error is what the status line shows
    browser.close()


def test_switching_platform_while_loading_keeps_download_off_until_it_arrives(reg: Any) -> None:
    executor = ManualExecutor()
    browser = RegistryBrowser(reg, executor=executor)
    executor.run_all()
    browser.repositories.value = "demo/multiarch"
    executor.run_all()
    browser.tags.value = "latest"
    executor.run_all()
    assert not browser.download_button.disabled
    browser.platform.value = "linux/arm64/v8"          # queued, not loaded yet
    assert browser.download_button.disabled and browser.layers is None
    browser.download_button.click()                    # nothing to download of the half-loaded image
    assert browser.bars == {} and len(executor.queue) == 1
    browser.platform.value = "linux/amd64"             # changed again before the first answer
    executor.run_all()                                 # the arm64 answer is stale: dropped
    amd64 = reg.manifest("demo/multiarch:latest", platform="linux/amd64").digest
    assert browser.layers.attrs["digest"] == amd64
    assert browser.value["platform"] == "linux/amd64" and not browser.download_button.disabled
    browser.close()


def test_a_corrupted_blob_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    with LocalRegistry(seed=seed.demo_content().only("demo/big")) as sandbox:
        client = sandbox.client()
        big = client.layers("demo/big:latest")["digest"].iloc[-1]
        data = sandbox.storage / "docker/registry/v2/blobs/sha256" / big[7:9] / big[7:] / "data"
        raw = bytearray(data.read_bytes())
        raw[100] ^= 1                                          # same size, wrong bytes
        data.write_bytes(bytes(raw))
        browser = choose(rx.browse(client).wait(), "demo/big", "latest")
        browser.dest.value = str(tmp_path)
        browser.download_button.click()
        browser.wait(60)
        assert browser.error.startswith("DigestMismatch: ") and big in browser.error
        assert "\n" not in browser.error and "⚠" in browser.status.value
        assert not (tmp_path / ("sha256-" + big[7:])).exists() and not list(tmp_path.glob("*.partial"))
        assert browser.bars["total"].container.children[1].bar_style == "danger"   # not a green 100 %
        assert not browser.download_button.disabled and browser.cancel_button.disabled
        browser.close()
        client.close()
