"""The browse widget against the seeded sandbox, without a browser: set values, click buttons, look at
the widget's state and at the HTTP exchanges it made (``reg.trace``)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
from digests import sha256_digest

import regexplore as rx
from regexplore.jupyter import RegistryBrowser
from regexplore.jupyter.browser import human_size, one_line


class ManualExecutor(Executor):
    """Queues work until the test runs it, in whatever order the test wants."""

    def __init__(self) -> None:
        self.queue: list[tuple[Future, Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        self.queue.append((fut, lambda: fn(*args, **kwargs)))
        return fut

    def run(self, index: int = 0) -> None:
        fut, fn = self.queue.pop(index)
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    def run_all(self) -> None:
        while self.queue:
            self.run(0)


@pytest.fixture
def reg(registry_sandbox: Any) -> Any:
    client = registry_sandbox.client()
    yield client
    client.close()


@pytest.fixture
def browser(reg: Any) -> Any:
    widget = rx.browse(reg)
    yield widget.wait()
    widget.close()


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads must hit the registry, not a blob cache filled by another test."""
    monkeypatch.setenv("REGEXPLORE_CACHE", str(tmp_path / "cache"))


def choose(browser: RegistryBrowser, repository: str, tag: str | None = None, *,
           search: str | None = None) -> RegistryBrowser:
    """Type ``search`` (default: the repository's last component), pick ``repository`` and ``tag``."""
    browser.search.value = repository.split("/")[-1] if search is None else search
    browser.repositories.value = repository
    browser.wait()
    if tag is not None:
        browser.tags.value = tag
        browser.wait()
    return browser


def test_import_regexplore_does_not_import_widgets() -> None:
    import subprocess

    code = ("import sys, regexplore, regexplore.jupyter.plots; "
            "bad = [m for m in ('ipywidgets', 'tqdm', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad; regexplore.browse; regexplore.jupyter.RegistryBrowser; "
            "assert 'ipywidgets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_catalog_and_search_filter(browser: RegistryBrowser, registry_sandbox: Any) -> None:
    assert list(browser.repositories.options) == sorted(registry_sandbox.seeded.repositories())
    assert browser.error is None
    browser.search.value = "BUSY"          # case-insensitive substring
    assert browser.repositories.options == ("demo/busybox",)
    assert "1 of" in browser.status.value
    browser.search.value = "no-such-thing"
    assert browser.repositories.options == ()
    browser.search.value = ""
    assert len(browser.repositories.options) == len(registry_sandbox.seeded.repositories())


def test_tags_load_details_in_background_and_sort(browser: RegistryBrowser, reg: Any) -> None:
    reg.clear_trace()
    choose(browser, "demo/busybox")
    frame = browser.tags_frame
    assert set(frame["tag"]) == {"1.0", "1.1", "latest"}
    assert frame["created"].notna().all() and frame["size"].notna().all()   # details arrived
    trace = reg.trace
    manifest_gets = trace[(trace["method"] == "GET") & trace["url"].str.contains("/manifests/")]
    assert {u.rsplit("/", 1)[1] for u in manifest_gets["url"]} >= {"1.0", "1.1", "latest"}
    assert trace["url"].str.endswith("/tags/list").any()

    assert [v for _, v in browser.tags.options] == ["1.0", "1.1", "latest"]
    browser.sort_by.value = "created"
    browser.descending.value = True
    values = [v for _, v in browser.tags.options]
    assert values[-1] == "1.0"               # the oldest last when newest first
    label = dict((v, label) for label, v in browser.tags.options)["1.0"]
    assert "2024-01-15" in label and "KiB" in label


def test_select_tag_shows_history_layers_config_and_value(browser: RegistryBrowser, reg: Any) -> None:
    choose(browser, "library/webapp", "latest")
    expected = reg.history("library/webapp:latest")
    assert len(browser.history) == len(expected) == 12
    assert browser.history_html.value.count("</tr>") == 12 + 1     # header + steps
    assert "gunicorn" in browser.history_html.value
    assert len(browser.layers) == 6 and browser.layers_html.value.count("</tr>") == 7
    assert "10001" in browser.config_html.value and "8000/tcp" in browser.config_html.value
    value = browser.value
    assert value == browser.selected
    assert value["repository"] == "library/webapp" and value["tag"] == "latest"
    assert value["digest"] == reg.manifest("library/webapp:latest").digest
    assert value["platform"] == "linux/amd64"
    assert value["registry"] == reg.name
    assert browser.platform.disabled            # a single image: nothing to choose
    assert not browser.download_button.disabled


def test_platform_selector_switches_the_image(browser: RegistryBrowser, reg: Any) -> None:
    choose(browser, "demo/multiarch", "latest")
    assert browser.platform.options == ("linux/amd64", "linux/arm64/v8")   # attestations left out
    assert not browser.platform.disabled
    amd64 = browser.layers.attrs["digest"]
    reg.clear_trace()
    browser.platform.value = "linux/arm64/v8"
    browser.wait()
    arm64 = browser.layers.attrs["digest"]
    assert arm64 != amd64
    assert arm64 == reg.manifest("demo/multiarch:latest", platform="linux/arm64/v8").digest
    assert "arm64" in browser.config_html.value
    assert browser.value["platform"] == "linux/arm64/v8"
    assert browser.value["digest"] == reg.manifest("demo/multiarch:latest").digest   # the index's


def test_changing_repository_clears_the_image(browser: RegistryBrowser) -> None:
    choose(browser, "demo/busybox", "1.0")
    assert browser.history is not None
    choose(browser, "demo/zstd")
    assert browser.tags.value is None and browser.history is None and browser.history_html.value == ""
    assert browser.download_button.disabled
    assert browser.value["tag"] is None and browser.value["digest"] is None


def test_stale_answers_never_overwrite_newer_ones(reg: Any) -> None:
    executor = ManualExecutor()
    browser = RegistryBrowser(reg, executor=executor)
    executor.run_all()
    browser.repositories.value = "demo/busybox"     # queued: tags of busybox
    browser.repositories.value = "demo/zstd"        # queued: tags of zstd
    assert len(executor.queue) == 2
    executor.run(1)                                 # zstd answers first …
    executor.run(0)                                 # … busybox answers late: dropped
    executor.run_all()                              # the details of zstd
    assert set(browser.tags_frame["tag"]) == {"latest"}
    assert browser.tags_frame["created"].notna().all()
    assert [v for _, v in browser.tags.options] == ["latest"]
    browser.close()


def test_work_runs_on_the_injected_executor_not_in_the_event_handler(reg: Any) -> None:
    executor = ManualExecutor()
    reg.clear_trace()
    browser = RegistryBrowser(reg, executor=executor)
    assert len(reg.trace) == 0 and browser.repositories.options == ()   # nothing ran yet
    assert "loading" in browser.status.value
    executor.run_all()
    assert "demo/busybox" in browser.repositories.options
    browser.close()


def test_connection_error_is_one_line_in_the_widget() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                   # nothing listens here
    browser = rx.browse(f"http://127.0.0.1:{port}").wait()
    assert browser.error is not None and "\n" not in browser.error
    assert f"127.0.0.1:{port}" in browser.error
    assert "⚠" in browser.status.value and browser.repositories.options == ()
    browser.close()


def test_registry_message_shown_when_a_tag_vanished(empty_sandbox: Any) -> None:
    from regexplore.sandbox import seed

    reg = empty_sandbox.client()
    seed.push(seed.demo_content().only("demo/minimal"), reg)
    browser = choose(rx.browse(reg).wait(), "demo/minimal")
    assert [v for _, v in browser.tags.options] == ["latest"]
    with pytest.warns(UserWarning, match="removes every tag"):
        reg.delete("demo/minimal:latest")          # gone between listing and clicking
    browser.tags.value = "latest"
    browser.wait()
    assert browser.error.startswith("NotFound: 404 MANIFEST_UNKNOWN")
    assert "manifest unknown" in browser.error.lower() and "\n" not in browser.error
    assert browser.history is None and browser.download_button.disabled
    browser.close()
    reg.close()


def test_download_with_progress_per_layer_and_total(browser: RegistryBrowser, reg: Any,
                                                     tmp_path: Path) -> None:
    choose(browser, "demo/big", "latest")
    browser.dest.value = str(tmp_path / "out")
    reg.clear_trace()
    browser.download_button.click()
    assert browser.download_button.disabled and not browser.cancel_button.disabled
    browser.wait(60)
    assert browser.error is None, browser.error
    layers = browser.layers
    paths = [Path(p) for p in browser.downloaded]
    assert len(paths) == 1 + len(layers)            # config + layers
    for path, digest in zip(paths[1:], layers["digest"]):
        assert path.parent == tmp_path / "out"
        assert sha256_digest(path.read_bytes()) == digest
    total = browser.bars["total"]
    assert total.total == int(layers["size"].sum()) + browser._config_blob[1]
    assert total.n == total.total
    assert "100%" in total.container.children[0].value
    for digest, size in zip(layers["digest"], layers["size"]):
        assert browser.bars[digest].n == size
    assert len(browser.progress_box.children[0].children) == 1 + 1 + len(layers)   # total, config, layers
    gets = reg.trace[(reg.trace["method"] == "GET") & reg.trace["url"].str.contains("/blobs/")]
    assert len(gets) >= 1 + len(layers)
    assert "downloaded" in browser.status.value
    assert not browser.download_button.disabled and browser.cancel_button.disabled


def test_cancel_stops_the_download(reg: Any, tmp_path: Path) -> None:
    executor = ManualExecutor()
    browser = RegistryBrowser(reg, executor=executor, dest=str(tmp_path / "out"))
    executor.run_all()
    browser.repositories.value = "demo/big"
    executor.run_all()
    browser.tags.value = "latest"
    executor.run_all()
    browser.download_button.click()                 # queued
    browser.cancel_button.click()                   # pressed before the first byte arrives
    executor.run_all()
    assert browser.downloaded == []
    assert "cancelled" in browser.status.value and browser.error is None
    big = browser.layers["digest"].iloc[-1]
    assert not (tmp_path / "out" / ("sha256-" + big[7:])).exists()
    assert browser.bars["total"].n < browser.bars["total"].total
    assert not browser.download_button.disabled
    browser.close()


def test_helpers() -> None:
    assert human_size(1536) == "1.5 KiB" and human_size(12) == "12 B" and human_size(None) == ""
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert len(one_line(ValueError("x" * 1000))) == 300


def test_files_are_listed_only_when_their_tab_is_opened(browser: RegistryBrowser, reg: Any) -> None:
    choose(browser, "library/webapp", "latest")
    assert browser.files is None and browser.files_html.value == ""     # layers are not streamed up front
    reg.clear_trace()
    browser.tabs.selected_index = 2                                     # "files"
    browser.wait()
    expected = reg.files("library/webapp:latest")
    assert len(browser.files) == len(expected) > 0
    assert "app/app.py" in browser.files_html.value
    assert ".wh.pkgcache.bin" in browser.files_html.value                # whiteouts are shown
    blob_gets = reg.trace[(reg.trace["method"] == "GET") & reg.trace["url"].str.contains("/blobs/")]
    assert len(blob_gets) >= 6                                          # six layers streamed


def test_plots_draw_what_the_frames_say(reg: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regexplore.jupyter import plots

    layers = reg.layers("library/webapp:latest")
    ax = plots.layer_sizes(layers)
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == pytest.approx([s / 2**20 for s in layers["size"]])
    assert "pip install" in ax.get_yticklabels()[4].get_text()

    tags = reg.tags("demo/busybox", details=True)
    ax = plots.tags_over_time(tags)
    (line,) = ax.get_lines()
    assert len(line.get_xdata()) == tags["digest"].nunique() == 2      # latest and 1.1 are one image
    assert {t.get_text() for t in ax.texts} == {"1.0", "1.1, latest"}

    matrix = plots.layer_matrix(reg, "demo/busybox")
    assert matrix.shape == (3, 2) and matrix.sum(axis=1).tolist() == [1, 1, 1]
    assert matrix.loc["1.1"].equals(matrix.loc["latest"]) and not matrix.loc["1.0"].equals(matrix.loc["1.1"])
    ax = plots.shared_layers(matrix)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(matrix.index)
    plt.close("all")
