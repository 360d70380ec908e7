"""``RegistryBrowser``: explore a registry in one widget, without freezing the kernel.

Layout, top to bottom::

    [search……………]  status line (what is loading, or the one-line error)
    repositories | tags (sort: tag / created / size) | image: platform; history / layers / files / config / inside
    destination [……]  [Download] [Cancel]   total bar, one bar per blob (tqdm)

Every registry call runs in a background executor (injectable; :meth:`RegistryBrowser.wait` blocks until
the work queued so far — and the work it queued in turn — is done, for tests and scripts). Results are
applied under one lock and only if the selection they were made for is still current, so a slow answer
for a repository the user has already left never overwrites the newer one. Errors end up in the status
line as one readable line that keeps the registry's own message.

The child widgets are public attributes (``search``, ``repositories``, ``tags``, ``sort_by``,
``descending``, ``platform``, ``tabs``, ``history_html``, ``layers_html``, ``files_html``,
``config_html``, ``inside`` (an :class:`~.inside_view.InsideView`), ``dest``, ``download_button``,
``cancel_button``, ``progress_box``, ``status``), and the
data behind them too (``repository_names``, ``tags_frame``, ``history``, ``layers``, ``files``,
``config``, ``downloaded``), so the logic is testable without a browser.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..errors import UnsupportedMediaType
from ..reference import is_repository_name
from .inside_view import InsideView
from .progress import Cancelled, DownloadProgress

__all__ = ["Cancelled", "RegistryBrowser", "human_size", "one_line"]

SORT_KEYS = ("tag", "created", "size")
_TABS = ("history", "layers", "files", "config", "inside")
_MAX_TABLE_ROWS = 400
_STYLE = """<style>
.regexplore-browser select { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.regexplore-browser table.regexplore-table { font-size: 12px; border-collapse: collapse; }
.regexplore-browser table.regexplore-table td, .regexplore-browser table.regexplore-table th
  { padding: 1px 6px; text-align: left; white-space: nowrap; max-width: 40em; overflow: hidden;
    text-overflow: ellipsis; }
.regexplore-status-error { color: #b00020; }
</style>"""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``"NotFound: 404 MANIFEST_UNKNOWN: manifest unknown (http://…)"``: the error's type and its first
    line (the registry's message is part of ``str()`` for :class:`~regexplore.RegistryError`)."""
    text = " ".join(str(exc).split()) or repr(exc)
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def human_size(n: Any) -> str:
    """``1536`` → ``"1.5 KiB"``; missing → ``""``."""
    if n is None or pd.isna(n):
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover - the loop always returns


def _table_html(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A DataFrame as an escaped HTML table (sizes humanised), cut at ``_MAX_TABLE_ROWS`` rows."""
    if df is None:
        return ""
    view = df[columns] if columns else df
    shown = view.head(_MAX_TABLE_ROWS).copy()
    for col in shown.columns:
        if col == "size" or col.startswith("size_"):
            shown[col] = shown[col].map(human_size)
        elif str(shown[col].dtype).startswith("datetime64"):
            shown[col] = shown[col].dt.strftime("%Y-%m-%d %H:%M:%S").fillna("")
        elif col in ("digest", "layer_digest", "diff_id", "layer"):
            shown[col] = shown[col].map(lambda d: "" if pd.isna(d) else str(d)[:19])
    body = shown.to_html(index=False, escape=True, na_rep="", classes="regexplore-table", border=0)
    if len(view) > _MAX_TABLE_ROWS:
        body += f"<div>… {len(view) - _MAX_TABLE_ROWS} more rows (the full table is in the attribute)</div>"
    return body


def _platform_of(config: dict) -> str:
    """``os/architecture[/variant]`` of an image config ("" when unknown)."""
    return "/".join(x for x in (config.get("os"), config.get("architecture"), config.get("variant")) if x)


def _config_html(config: dict, manifest_digest: str | None) -> str:
    """The parts of an image config a person looks at first, as a small definition table."""
    inner = config.get("config") or config.get("container_config") or {}
    rows = [
        ("image digest", manifest_digest),
        ("platform", _platform_of(config)),
        ("created", config.get("created")),
        ("entrypoint", inner.get("Entrypoint")),
        ("cmd", inner.get("Cmd")),
        ("workdir", inner.get("WorkingDir")),
        ("user", inner.get("User")),
        ("ports", sorted(inner.get("ExposedPorts") or {})),
        ("env", inner.get("Env")),
        ("labels", inner.get("Labels")),
    ]
    cells = []
    for key, value in rows:
        if value in (None, "", [], {}):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = " ".join(map(str, value)) if key in ("cmd", "entrypoint") else ", ".join(map(str, value))
        cells.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    return f"<table class='regexplore-table regexplore-config'>{''.join(cells)}</table>"


def _image_from_history(reg: Any, ref: str) -> dict[str, Any]:
    """What the image view shows for a registry without manifests (``reg.can("manifest")`` is False):
    the history alone; its layers are the history's steps, under the keys a download reports them by
    (``history.attrs["layer_keys"]``), with no digest, config blob nor platform."""
    history = reg.history(ref)
    layers = pd.DataFrame({"index": range(len(history)), "digest": history.attrs["layer_keys"],
                           "compression": pd.NA, "size": history["size"], "created_by": history["created_by"]})
    layers.attrs["digest"] = None
    return {"ref": ref, "digest": None, "media_type": "image (history only)", "platforms": [],
            "platform": None, "history": history, "layers": layers, "config": {}, "config_blob": (None, 0)}


def _partials(dest: str) -> dict[Any, tuple[int, int, int]]:
    """The ``.partial`` files in ``dest`` → (inode, size, mtime in ns): what a download left unfinished."""
    from pathlib import Path

    out = {}
    for path in Path(dest).expanduser().glob("*.partial"):
        try:
            st = path.stat()
        except FileNotFoundError:   # finished (renamed) meanwhile
            continue
        out[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _remove_partials(dest: str, before: dict[Any, tuple[int, int, int]]) -> int:
    """Remove the ``.partial`` files in ``dest`` that a cancelled download wrote: those not in
    ``before`` (:func:`_partials` when it started) or changed since. Returns how many were removed."""
    removed = 0
    for path, state in _partials(dest).items():
        if before.get(path) == state:
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


class RegistryBrowser(widgets.VBox):
    """Search → repository → tag → image (platform, history, layers, files, config) → download.

    Parameters
    ----------
    registry : a :class:`regexplore.Registry`, or a host / URL for one.
    dest : the folder downloads go to (editable in the widget); default ``"downloads"``.
    executor : where registry calls run; default a private ``ThreadPoolExecutor(4)``. Tests may pass any
        ``concurrent.futures.Executor``.
    autoload : start loading the catalog right away (default True).

    ``value`` / ``selected``: ``{"registry", "repository", "tag", "digest", "platform"}`` of the current
    selection (None where nothing is chosen yet). :meth:`wait` blocks until background work is done.
    """

    def __init__(self, registry: Any, *, dest: str = "downloads", executor: Executor | None = None,
                 autoload: bool = True) -> None:
        self._own_registry = isinstance(registry, str)
        if isinstance(registry, str):
            from ..registry import Registry

            registry = Registry(registry)
        self.registry = registry
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(4, thread_name_prefix="regexplore-browse")
        self._ui = threading.RLock()          # held while widgets change (observers run inside it)
        self._jobs_lock = threading.Lock()
        self._jobs: set[Future] = set()
        self._generation: dict[str, int] = {}
        self._quiet = 0                       # >0 while the code itself changes values: observers ignore
        self._cancel = threading.Event()
        self._catalog_error: str | None = None   # the catalog was refused: typed names are offered
        self._download: Future | None = None      # the running download, if any

        # data behind the widgets
        self.repository_names: list[str] = []
        self.tags_frame: pd.DataFrame | None = None
        self.digest: str | None = None
        self.history: pd.DataFrame | None = None
        self.layers: pd.DataFrame | None = None
        self.files: pd.DataFrame | None = None
        self.config: dict | None = None
        self.downloaded: list[Any] = []
        self.error: str | None = None
        self.bars: dict[str, Any] = {}
        self._config_blob: tuple[str | None, int] = (None, 0)

        self._make_widgets(dest)
        tags_column = widgets.VBox([widgets.HBox([self.sort_by, self.descending]), self.tags],
                                   layout=widgets.Layout(min_width="470px"))
        image_column = widgets.VBox([self.image_title, self.platform, self.tabs],
                                    layout=widgets.Layout(flex="1 1 auto", min_width="420px"))
        super().__init__([
            widgets.HTML(_STYLE),
            widgets.HBox([self.search, self.status]),
            widgets.HBox([self.repositories, tags_column, image_column]),
            widgets.HBox([self.dest, self.download_button, self.cancel_button]),
            self.progress_box,
        ])
        self.add_class("regexplore-browser")
        self._add_css_classes()
        if autoload:
            self.refresh()

    def _make_widgets(self, dest: str) -> None:
        """Create the child widgets (public attributes) and connect their observers."""
        self.search = widgets.Text(placeholder="filter repositories…", description="search",
                                   continuous_update=True, layout=widgets.Layout(width="320px"))
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.6em"))
        self.status.add_class("regexplore-status")
        self.repositories = widgets.Select(options=[], value=None, rows=14,
                                           layout=widgets.Layout(width="260px"))
        self.sort_by = widgets.ToggleButtons(options=list(SORT_KEYS), value="tag",
                                             style={"button_width": "64px"},
                                             layout=widgets.Layout(width="auto"))
        self.descending = widgets.Checkbox(value=False, description="newest / biggest first", indent=False)
        self.tags = widgets.Select(options=[], value=None, rows=12, layout=widgets.Layout(width="460px"))
        self.platform = widgets.Dropdown(options=[], value=None, description="platform", disabled=True)
        scroll = {"max_height": "420px", "overflow": "auto"}
        self.history_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.layers_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.files_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.config_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.inside = InsideView(_table_html)   # OS, packages (filter box), wasted files: loaded when opened
        self.tabs = widgets.Tab(children=[self.history_html, self.layers_html, self.files_html,
                                          self.config_html, self.inside])
        self.tabs.titles = _TABS
        self.image_title = widgets.HTML()
        self.dest = widgets.Text(value=str(dest), description="save to", layout=widgets.Layout(width="360px"))
        self.download_button = widgets.Button(description="Download", icon="download", disabled=True,
                                              button_style="primary")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress_box = widgets.VBox()

        self.search.observe(self._on_search, names="value")
        self.repositories.observe(self._on_repository, names="value")
        self.sort_by.observe(self._on_sort, names="value")
        self.descending.observe(self._on_sort, names="value")
        self.tags.observe(self._on_tag, names="value")
        self.platform.observe(self._on_platform, names="value")
        self.tabs.observe(self._on_tab, names="selected_index")
        self.download_button.on_click(self._on_download)
        self.cancel_button.on_click(self._on_cancel)

    def _add_css_classes(self) -> None:
        """CSS classes for styling and for browser tests: ``.regexplore-search``, ``.regexplore-history``, …"""
        for name in ("search", "repositories", "tags", "sort_by", "platform", "tabs", "dest",
                     "download_button", "cancel_button", "progress_box",
                     "history_html", "layers_html", "files_html", "config_html"):
            css = name.removesuffix("_button").removesuffix("_html").removesuffix("_box").replace("_", "-")
            getattr(self, name).add_class("regexplore-" + css)

    # ------------------------------------------------------------------ public
    @property
    def value(self) -> dict[str, Any]:
        """The current selection: registry, repository, tag, digest (of the tag's manifest) and platform."""
        return {
            "registry": getattr(self.registry, "name", None),
            "repository": self.repositories.value,
            "tag": self.tags.value,
            "digest": self.digest,
            "platform": self.platform.value,
        }

    @property
    def selected(self) -> dict[str, Any]:
        """Alias of :attr:`value`."""
        return self.value

    @property
    def reference(self) -> str | None:
        """``repository:tag`` of the selection, or None."""
        if not self.repositories.value or not self.tags.value:
            return None
        return f"{self.repositories.value}:{self.tags.value}"

    def refresh(self) -> Future:
        """(Re)load the catalog in the background. A v1 registry (no catalog) is listed by its search;
        when the registry refuses the catalog, a repository name typed in the search box is offered."""
        self._set_status("loading the catalog…")
        return self._run("catalog", self._list_repositories, self._apply_catalog, failed=self._catalog_failed)

    def _list_repositories(self) -> list[str]:
        """The catalog; for a registry that has none (``reg.can("catalog")`` is False once known, and in
        api="auto" the catalog call is what finds that out), what its search lists."""
        from ..errors import RegistryError

        try:
            return list(self.registry.catalog()["repository"])
        except RegistryError:
            if self.registry.can("catalog"):
                raise
        return list(self.registry.search("", limit=1000)["name"])

    def wait(self, timeout: float | None = 30.0) -> RegistryBrowser:
        """Block until all background work (including work it started) is done; re-raises nothing —
        errors are in :attr:`error`. Raises ``TimeoutError`` after ``timeout`` seconds."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._jobs_lock:
                pending = [f for f in self._jobs if not f.done()]
                self._jobs = set(pending)
            if not pending:
                return self
            for fut in pending:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    fut.result(timeout=left)
                except TimeoutError:
                    raise TimeoutError(f"background work still running after {timeout} s") from None
                except BaseException:  # noqa: BLE001, S110 (errors were shown in the widget already)
                    pass

    def close(self) -> None:
        """Cancel downloads, stop the private executor (and the registry client made from a URL) and close
        the widgets."""
        if "_cancel" not in self.__dict__:   # __init__ failed (e.g. a bad URL): nothing was started
            return
        self._cancel.set()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_registry:
            self.registry.close()
        super().close()

    # ------------------------------------------------------------------ machinery
    @contextmanager
    def _programmatic(self) -> Iterator[None]:
        """Change widget values without triggering the user-event handlers."""
        with self._ui:
            self._quiet += 1
            try:
                yield
            finally:
                self._quiet -= 1

    def _bump(self, *keys: str) -> None:
        """Invalidate running jobs of ``keys``: their results will be dropped."""
        with self._jobs_lock:
            for key in keys:
                self._generation[key] = self._generation.get(key, 0) + 1

    def _run(self, key: str, work: Callable[[], Any], apply: Callable[[Any], None],
             executor: Executor | None = None,
             failed: Callable[[BaseException], None] | None = None) -> Future:
        """Run ``work()`` in the background, then ``apply(result)`` under the UI lock if no newer job
        of the same ``key`` was started meanwhile. Errors go to the status line (then to ``failed``)."""
        with self._jobs_lock:
            gen = self._generation[key] = self._generation.get(key, 0) + 1

        def current() -> bool:
            return self._generation.get(key) == gen

        def job() -> None:
            try:
                result = work()
            except BaseException as exc:
                with self._ui:
                    if current():
                        self._show_error(exc)
                        if failed is not None:
                            failed(exc)
                raise
            with self._ui:
                if current():
                    try:
                        apply(result)
                    except BaseException as exc:  # a bug in apply must still be visible
                        self._show_error(exc)
                        raise

        fut = (executor or self._executor).submit(job)
        with self._jobs_lock:
            self._jobs.add(fut)
        return fut

    def _set_status(self, text: str) -> None:
        with self._ui:
            self.error = None        # the error shown last is gone from the status line
            self.status.value = f"<span>{html.escape(text)}</span>" if text else ""

    def _show_error(self, exc: BaseException) -> None:
        self.error = one_line(exc)
        self.status.value = f"<span class='regexplore-status-error'>⚠ {html.escape(self.error)}</span>"

    # ------------------------------------------------------------------ catalog and search
    def _apply_catalog(self, names: list[str]) -> None:
        self.repository_names = sorted(names)
        self._catalog_error = None
        self._set_status(f"{len(names)} repositories")
        self._filter_repositories()

    def _catalog_failed(self, exc: BaseException) -> None:
        self.repository_names = []
        self._catalog_error = self.error
        if self.search.value.strip():
            self._filter_repositories()

    def _on_search(self, change: dict) -> None:
        if not self._quiet:
            with self._ui:
                self._filter_repositories()

    def _filter_repositories(self) -> None:
        needle = self.search.value.strip().lower()
        names = [n for n in self.repository_names if needle in n.lower()]
        typed = self._catalog_error is not None and is_repository_name(needle)
        if typed and needle not in names:
            names.insert(0, needle)
        keep = self.repositories.value if self.repositories.value in names else None
        with self._programmatic():
            self.repositories.options = names
            self.repositories.value = keep
        if keep is None and (self.tags.options or self.tags_frame is not None):
            self._clear_repository()
        if self._catalog_error is not None and needle:
            self._set_status(f"no catalog ({self._catalog_error}); choose {needle!r} to open it" if typed
                             else f"no catalog ({self._catalog_error}); type a repository name")
        elif needle:
            self._set_status(f"{len(names)} of {len(self.repository_names)} repositories match {needle!r}")

    # ------------------------------------------------------------------ repository → tags
    def _clear_repository(self) -> None:
        self._bump("tags", "details", "image", "files")
        self.tags_frame = None
        with self._programmatic():
            self.tags.options = []
            self.tags.value = None
        self._clear_image()

    def _on_repository(self, change: dict) -> None:
        if self._quiet:
            return
        with self._ui:
            self._clear_repository()
            repo = change["new"]
            if not repo:
                return
            self._set_status(f"loading the tags of {repo}…")
            self._run("tags", lambda: self.registry.tags(repo), lambda df: self._apply_tags(repo, df))

    def _apply_tags(self, repo: str, df: pd.DataFrame) -> None:
        self.tags_frame = df
        self._render_tags()
        if not self.registry.can("tag details"):   # no manifests (v1): the tag list is all there is
            self._set_status(f"{len(df)} tags in {repo}")
            return
        self._set_status(f"{len(df)} tags in {repo}; loading details…")
        self._run("details", lambda: self.registry.tags(repo, details=True),
                  lambda details: self._apply_details(repo, details))

    def _apply_details(self, repo: str, df: pd.DataFrame) -> None:
        self.tags_frame = df
        self._render_tags()
        self._set_status(f"{len(df)} tags in {repo}")

    def _sorted_tags(self) -> pd.DataFrame:
        df = self.tags_frame
        if df is None:
            return pd.DataFrame(columns=["tag"])
        key = self.sort_by.value
        if key not in df.columns:
            key = "tag"
        return df.sort_values([key, "tag"] if key != "tag" else ["tag"],
                              ascending=not self.descending.value, na_position="last", kind="stable")

    def _render_tags(self) -> None:
        df = self._sorted_tags()
        width = max([len(str(t)) for t in df["tag"]] + [3])
        options = []
        for row in df.itertuples(index=False):
            parts = [str(row.tag).ljust(width)]
            created = getattr(row, "created", None)
            if created is not None and not pd.isna(created):
                parts.append(created.strftime("%Y-%m-%d %H:%M"))
            size = getattr(row, "size", None)
            if size is not None and not pd.isna(size):
                parts.append(human_size(size).rjust(9))
            options.append(("  ".join(parts), str(row.tag)))
        keep = self.tags.value
        with self._programmatic():
            self.tags.options = options
            self.tags.value = keep if keep in {v for _, v in options} else None

    def _on_sort(self, change: dict) -> None:
        if not self._quiet:
            with self._ui:
                self._render_tags()

    # ------------------------------------------------------------------ tag / platform → image
    def _clear_image(self) -> None:
        self._bump("image", "files", "inside")
        self.inside.clear()
        self.digest = None
        self.history = self.layers = self.files = None
        self.config = None
        with self._programmatic():
            self.platform.options = []
            self.platform.value = None
            self.platform.disabled = True
        for w in (self.history_html, self.layers_html, self.files_html, self.config_html, self.image_title):
            w.value = ""
        self.download_button.disabled = True

    def _on_tag(self, change: dict) -> None:
        if self._quiet:
            return
        with self._ui:
            self._clear_image()
            if change["new"]:
                self._load_image(platform=None)

    def _on_platform(self, change: dict) -> None:
        if self._quiet or not change["new"]:
            return
        with self._ui:
            self._load_image(platform=change["new"])

    def _load_image(self, platform: str | None) -> None:
        ref = self.reference
        if ref is None:
            return
        self._bump("files")
        self.files = self.layers = None           # the shown image is being replaced: no download of it
        self.files_html.value = ""
        self.download_button.disabled = True
        self._set_status(f"loading {ref}…")
        reg = self.registry

        def work() -> dict[str, Any]:
            if not reg.can("manifest"):
                return _image_from_history(reg, ref)
            top = reg.manifest(ref)
            platforms: list[str] = []
            chosen = platform
            if top.is_index:
                plats = reg.platforms(ref)
                platforms = [p for p, att in zip(plats["platform"], plats["attestation"])
                             if not att and isinstance(p, str)]   # an artifact entry has no platform (NA)
                if chosen is None:
                    default = platforms[0] if platforms else None
                    chosen = "linux/amd64" if "linux/amd64" in platforms else default
            layers = reg.layers(ref, platform=chosen)
            repo = ref.rsplit(":", 1)[0]
            image = reg.manifest(f"{repo}@{layers.attrs['digest']}")  # by digest: cached
            config_blob = image.config_descriptor or {}
            try:
                config = reg.config(ref, platform=chosen)
            except UnsupportedMediaType:   # an artifact's config that is not JSON: the rest still shows
                config = {}
            return {
                "ref": ref, "digest": top.digest, "media_type": top.media_type, "platforms": platforms,
                "platform": chosen, "history": reg.history(ref, platform=chosen), "layers": layers,
                "config": config,
                "config_blob": (config_blob.get("digest"), int(config_blob.get("size") or 0)),
            }

        self._run("image", work, self._apply_image)

    def _apply_image(self, info: dict[str, Any]) -> None:
        self.digest = info["digest"]
        self.history, self.layers, self.config = info["history"], info["layers"], info["config"]
        self._config_blob = info["config_blob"]
        cfg = info["config"] or {}
        platform = info["platform"] or _platform_of(cfg) or None
        with self._programmatic():
            options = info["platforms"] or ([platform] if platform else [])
            self.platform.options = options
            self.platform.value = platform if platform in options else None
            self.platform.disabled = len(info["platforms"]) < 2
        sizes = self.layers["size"]
        total = human_size(sizes.sum()) if sizes.notna().all() else "size unknown"   # schema1: no sizes
        self.image_title.value = (
            f"<b>{html.escape(info['ref'])}</b> <code>{html.escape((info['digest'] or '')[:19])}</code> "
            f"&middot; {html.escape(info['media_type'].split('/')[-1])} &middot; "
            f"{len(self.layers)} layers, {html.escape(total)}")
        self.history_html.value = _table_html(self.history, ["step", "created", "created_by", "size",
                                                             "empty_layer"])
        self.layers_html.value = _table_html(self.layers, ["index", "digest", "compression", "size",
                                                           "created_by"])
        self.config_html.value = _config_html(cfg, self.layers.attrs.get("digest"))
        self.download_button.disabled = self._downloading()
        self.error = None
        self._set_status(f"{info['ref']}: {len(self.history)} history steps, {len(self.layers)} layers")
        if self.tabs.selected_index == _TABS.index("files"):
            self._load_files()
        if self.tabs.selected_index == _TABS.index("inside"):
            self._load_inside()

    # ------------------------------------------------------------------ files (lazy: they stream layers)
    def _on_tab(self, change: dict) -> None:
        if change["new"] == _TABS.index("files") and self.files is None and self.layers is not None:
            with self._ui:
                self._load_files()
        if change["new"] == _TABS.index("inside") and self.inside.packages is None and self.layers is not None:
            with self._ui:
                self._load_inside()

    def _load_inside(self) -> Future | None:
        """OS, packages and wasted files of the shown image, in the background (the three share one pass
        over each layer)."""
        ref, platform, reg = self.reference, self.platform.value, self.registry
        if ref is None:
            return None
        self.inside.loading()
        return self._run("inside", lambda: (reg.os_release(ref, platform), reg.packages(ref, platform),
                                            reg.efficiency(ref, platform)),
                         lambda found: self.inside.show(*found), failed=lambda exc: self.inside.clear())

    def _load_files(self) -> Future | None:
        ref, platform = self.reference, self.platform.value
        if ref is None:
            return None
        self.files_html.value = "<i>listing the layers' files…</i>"
        return self._run("files", lambda: self.registry.files(ref, platform=platform), self._apply_files,
                         failed=lambda exc: setattr(self.files_html, "value", ""))

    def _apply_files(self, df: pd.DataFrame) -> None:
        self.files = df
        cols = [c for c in ("layer", "path", "type", "size", "mode", "mtime", "linkname", "whiteout")
                if c in df.columns]
        self.files_html.value = _table_html(df, cols)

    # ------------------------------------------------------------------ downloads
    def _downloading(self) -> bool:
        return self._download is not None and not self._download.done()

    def _on_download(self, _button: Any) -> None:
        with self._ui:
            ref, platform = self.reference, self.platform.value
            if ref is None or self.layers is None or self._downloading():
                return
            try:
                self._start_download(ref, platform, self.dest.value or ".")
            except Exception as exc:   # noqa: BLE001 (a click handler's traceback would land outside the widget)
                self._show_error(exc)

    def _start_download(self, ref: str, platform: str | None, dest: str) -> Future:

        self._cancel.clear()
        # sizes may be unknown (schema1 manifests have none): 0, the bar learns it from the transfer
        blobs = [(str(d), 0 if pd.isna(s) else int(s)) for d, s in zip(self.layers["digest"], self.layers["size"])]
        cfg_digest = self._config_blob[0]
        if cfg_digest:
            blobs.insert(0, self._config_blob)
        progress = DownloadProgress(blobs, cancel=self._cancel, labels={cfg_digest: "config"})
        self.bars = progress.bars
        self.progress_box.children = [progress.widget]
        self.download_button.disabled = True
        self.cancel_button.disabled = False
        self._set_status(f"downloading {ref} to {dest}…")
        reg = self.registry

        before = _partials(dest)

        def work() -> list[Any]:
            try:
                return reg.download(ref, dest, platform=platform, progress=progress)
            except BaseException:
                if not self._cancel.is_set():
                    raise
                removed = _remove_partials(dest, before)   # nothing unfinished is left behind
                raise Cancelled(f"download cancelled ({removed} unfinished files removed; "
                                "the finished ones are verified)") from None
            finally:
                progress.finish()

        def ended() -> None:
            self.cancel_button.disabled = True
            self.download_button.disabled = self.layers is None

        def done(paths: list[Any]) -> None:
            self.downloaded = list(paths)
            ended()
            self._set_status(f"downloaded {ref}: {len(paths)} files in {dest}")

        def failed(exc: BaseException) -> None:   # the error is in the status line already
            ended()
            if isinstance(exc, Cancelled):
                self._set_status(str(exc))
            else:   # e.g. DigestMismatch after every byte arrived: no green 100 % bar
                progress.bars["total"].container.children[1].bar_style = "danger"

        fut = self._download = self._run("download", work, done, failed=failed)
        return fut

    def _on_cancel(self, _button: Any) -> None:
        if not self._downloading():
            return
        self._cancel.set()
        self.cancel_button.disabled = True
        self._set_status("cancelling…")
