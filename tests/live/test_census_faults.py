"""Census faults that must become rows, never a stopped census or a hidden manifest (review H5, M3, M4):
hostile layer descriptors served by a small loopback registry (the real registry refuses to store them), and
a layer blob or a catalog that fails at a proxy in front of the real registry binary."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from digests import sha256_digest
from distributed.diagnostics.plugin import SchedulerPlugin
from layerkit import build_layer
from pushing import Pusher, default_config, push_image
from servers import FaultProxy, serve, stop

import regexplore as rx
from regexplore.census.ledger import Ledger
from regexplore.census.plan import Unit
from regexplore.sandbox import LocalRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()

pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.xdist_group("census")]


def raw_tags(url: str, repo: str) -> list[str]:
    """The tags of ``repo``, listed with plain requests."""
    return requests.get(f"{url}/v2/{repo}/tags/list", timeout=30).json()["tags"]


def _manifest(layers: list) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers, "config": {
        "mediaType": OCI_CONFIG, "digest": sha256_digest(CONFIG), "size": len(CONFIG)}}).encode()


#: repository -> its one manifest (tag ``t``): two hostile layer lists, and a well-formed image of no layers
HOSTILE = {"bad/int": _manifest([1]), "bad/nodigest": _manifest([{"mediaType": TAR_GZIP, "size": 1}]),
           "good/empty": _manifest([])}


#: what the hostile registry's catalog lists besides :data:`HOSTILE`: names that are none (they would steer
#: the census' requests, with its credentials, to other paths of the registry)
NOT_NAMES = ["../v2/_catalog", "a?n=1", "x%2f..", "B/Upper", 5, {"name": "x"}]


class _Hostile(BaseHTTPRequestHandler):
    """A registry serving :data:`HOSTILE`: tag listings, manifests by tag or digest, the config blob, and a
    catalog that also lists :data:`NOT_NAMES`. Request paths are kept in ``paths``."""

    paths: list[str] = []

    def _answer(self, body: bytes | None, media_type: str = "application/json") -> None:
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Content-Digest", sha256_digest(body))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.paths.append(self.path)
        path = self.path.split("?")[0]
        if path == "/v2/":
            return self._answer(b"{}")
        if path == "/v2/_catalog":
            return self._answer(json.dumps({"repositories": [*HOSTILE, *NOT_NAMES]}).encode())
        repo, _, rest = path[len("/v2/"):].rpartition("/")
        repo, kind = repo.rsplit("/", 1)
        doc = HOSTILE.get(repo)
        if doc is None:
            return self._answer(None)
        if kind == "tags":
            return self._answer(json.dumps({"name": repo, "tags": ["t"]}).encode())
        if kind == "manifests" and rest in ("t", sha256_digest(doc)):
            return self._answer(doc, OCI_MANIFEST)
        return self._answer(CONFIG if kind == "blobs" and rest == sha256_digest(CONFIG) else None)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_hostile_layer_descriptors_are_error_rows_not_a_stopped_census(tmp_path):
    """``"layers": [1]`` and a tar layer without a digest: one ``errors`` row each; the census goes on and
    stores the other repository whole (before the fix: AttributeError / KeyError out of ``rx.census``)."""
    httpd = serve(_Hostile)
    try:
        c = rx.census(httpd.url, tmp_path / "c", repositories=list(HOSTILE), packages=True, progress=False)
    finally:
        stop(httpd)
    rows = c.errors.sort_values("repository")[["repository", "tag", "error"]].to_dict("records")
    assert rows == [{"repository": "bad/int", "tag": "t", "error": "UnsupportedMediaType"},
                    {"repository": "bad/nodigest", "tag": "t", "error": "UnsupportedMediaType"}]
    assert c.manifests.digest.tolist() == [sha256_digest(HOSTILE["good/empty"])]
    assert sorted(c.tags.repository) == sorted(HOSTILE)
    assert Ledger(c.path).done(Unit("good/empty")) and not Ledger(c.path).done(Unit("bad/int"))


def test_catalog_entries_that_are_no_repository_names_make_no_request(tmp_path):
    """A catalog listing ``..``, ``?``, ``%``, uppercase, a number and an object besides real names: one
    ``ValueError`` row each, no request for them (before the fix the census asked the registry for
    ``/v2/../v2/_catalog/tags/list`` and the like), and the real repositories censused."""
    _Hostile.paths = []
    httpd = serve(_Hostile)
    try:
        c = rx.census(httpd.url, tmp_path / "c", progress=False)
    finally:
        stop(httpd)
    errors = c.errors
    assert sorted(errors[errors.error == "ValueError"].message.str.slice(0, 25)) == sorted(
        f"not a repository name: {str(name)!r}"[:25] for name in NOT_NAMES)
    asked = {p.split("?")[0] for p in _Hostile.paths} - {"/v2/", "/v2/_catalog"}
    assert {p.split("/", 2)[2].rsplit("/", 2)[0] for p in asked} == set(HOSTILE)
    assert sorted(c.tags.repository) == sorted(HOSTILE)


@pytest.fixture(scope="module")
def registry():
    """The real registry binary holding one image of one gzip layer (``app/one:1``)."""
    with LocalRegistry() as sandbox:
        blob, _ = build_layer({"etc/hello": b"hi\n"})
        yield sandbox, push_image(sandbox.url, "app/one", "1", [(blob, TAR_GZIP)])


def test_a_missing_layer_keeps_the_manifest_and_heals_on_resume(registry, tmp_path):
    """A layer blob that answers 404 (a garbage-collected registry): the image's ``manifests`` / ``layers``
    rows are stored all the same, the scan is one ``errors`` row (``files:<digest>``), and a resumed census
    with the blob back writes the files and leaves no error row."""
    sandbox, image = registry
    out = tmp_path / "c"
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(404, times=None, path=image.layer_digests[0])
        c = rx.census(proxy.url, out, repositories=["app/one"], files=True, progress=False)
    assert c.manifests.digest.tolist() == [image.digest]
    assert c.layers.digest.tolist() == image.layer_digests
    assert c.errors[["tag", "error"]].to_dict("records") == [{"tag": f"files:{image.digest}", "error": "NotFound"}]
    assert c.files.empty
    again = rx.census(sandbox.url, out, repositories=["app/one"], files=True, progress=False)
    assert again.errors.empty
    with tarfile.open(fileobj=io.BytesIO(image.layers[0])) as tar:
        assert again.files.path.tolist() == tar.getnames()


def test_a_catalog_fault_that_heals_on_resume_leaves_no_error_row(registry, tmp_path):
    """The catalog answers 503 (past the retries) on the first run: the census raises and records it; the
    resumed census lists the catalog and removes that row (before the fix it stayed for good)."""
    sandbox, image = registry
    out = tmp_path / "c"
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(503, times=None, path=r"/_catalog")
        with pytest.raises(rx.RegistryError):
            rx.census(proxy.url, out, progress=False)
    assert rx.open_census(out).errors.error.tolist() == ["RegistryError"]
    again = rx.census(sandbox.url, out, progress=False)
    assert again.errors.empty
    assert again.tags.digest.tolist() == [image.digest]


class _TaskSpy(SchedulerPlugin):
    """A scheduler plugin keeping each task's pickled run spec (its function and arguments) as it is
    scheduled: what the scheduler holds, the dashboard shows and a failing task's log line is made of."""

    name = "regexplore-task-spy"

    def __init__(self, scheduler) -> None:
        self.scheduler, self.specs = scheduler, []
        self.failures: list[str] = []

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing":
            try:
                self.specs.append(pickle.dumps(self.scheduler.tasks[key].run_spec))
            except Exception as exc:  # the scheduler only logs a plugin's error: keep it for the test
                self.failures.append(repr(exc))


def test_registry_credentials_stay_out_of_dask_tasks(registry, tmp_path):
    """A Dask census with ``auth``: no task the scheduler runs carries the password (before the fix every
    task's arguments held the job's registry ``kwargs``), and the census works."""
    from distributed import Client, LocalCluster

    sandbox, image = registry
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        spy = _TaskSpy(cluster.scheduler)
        cluster.scheduler.add_plugin(spy)
        c = rx.census(sandbox.url, tmp_path / "c", client=client, progress=False, auth=("u", "sekret-token"))
    assert c.tags.digest.tolist() == [image.digest]
    assert not spy.failures
    assert spy.specs and all(b"census_batch" in spec for spec in spy.specs)
    assert not [spec for spec in spy.specs if b"sekret" in spec]


def test_a_resumed_repository_keeps_the_listing_its_pages_were_cut_from(registry, tmp_path):
    """250 tags (three units); one tag of the repository unit (page 0) fails in run 1, so only the pages
    finish. Five tags of page 0 are deleted before run 2: a fresh listing would shift tags of page 1 into
    page 0, stored twice (before the fix). The resumed unit works on its first listing: every tag of run 1's
    listing once, the deleted ones as NotFound error rows."""
    sandbox, image = registry
    repo, out = "many/tags", tmp_path / "c"
    pushed = push_image(sandbox.url, repo, "t000", [(image.layers[0], TAR_GZIP)])
    other = push_image(sandbox.url, repo, None, [(image.layers[0], TAR_GZIP)], config=default_config([], "arm64"))
    with Pusher(sandbox.url) as p:
        for tag in (f"t{i:03}" for i in range(1, 250)):
            p.manifest(repo, tag, pushed.manifest, OCI_MANIFEST)
        first = raw_tags(sandbox.url, repo)  # the registry's order (not sorted): the census cuts pages in it
        for tag in first[:5]:
            p.manifest(repo, tag, other.manifest, OCI_MANIFEST)
    assert raw_tags(sandbox.url, repo) == first
    with FaultProxy(sandbox.url) as proxy:
        proxy.fail(503, times=None, path=f"/manifests/{first[50]}$", method="HEAD")
        c = rx.census(proxy.url, out, repositories=[repo], progress=False)
    assert c.errors.tag.tolist() == [first[50]]
    requests.delete(f"{sandbox.url}/v2/{repo}/manifests/{other.digest}", timeout=30).raise_for_status()
    assert raw_tags(sandbox.url, repo) == first[5:]  # deleting untags; page 1's first tags now sort in page 0
    again = rx.census(sandbox.url, out, repositories=[repo], progress=False)
    tags = again.tags.tag.tolist()
    assert len(tags) == len(set(tags)) and set(tags) == set(first)
    assert sorted(again.errors.tag) == sorted(first[:5]) and set(again.errors.error) == {"NotFound"}
