"""syft 1.18.1 as the oracle of the package catalogers: scan an image straight from the test registry and
return its packages of regexplore's seven types, each with its evidence locations and their layers.

``syft_packages(host, "repo:tag", scope="all-layers")`` runs
``SYFT_CHECK_FOR_APP_UPDATE=false syft scan registry:HOST/repo:tag -o syft-json=FILE -q --scope all-layers``
(syft picks plain HTTP for 127.0.0.1 itself) and maps syft's layer IDs (diff IDs) to the layers' digests
through the image config's ``rootfs.diff_ids``.

With ``--scope all-layers`` syft parses every written version of an evidence file, each layer's view
stacked up to that layer; the same package found at the same path in several layers is one artifact with
one location per layer, at another path another artifact. syft does not model deletions there: content a
later layer removes (and re-adds) still counts from the lower layer (../shared/docs/inside.md A.9).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TYPES = ("deb", "apk", "rpm", "python", "npm", "go-module", "java-archive")
SYFT = Path(sys.prefix) / "bin" / "syft"


@dataclass(frozen=True)
class Location:
    """One place syft found a package: ``path`` without the leading ``/``, the ``layer`` digest and its
    ``index`` in the manifest (0 = bottom), and whether it is the ``primary`` evidence (the status file, the
    METADATA) or supporting (a copyright file, a RECORD)."""

    path: str
    layer: str
    index: int
    primary: bool


@dataclass(frozen=True)
class SyftPackage:
    """One syft artifact: ``licenses`` are the license values syft gives (sorted, unique)."""

    name: str
    version: str
    type: str
    purl: str
    licenses: tuple[str, ...]
    locations: tuple[Location, ...]

    @property
    def paths(self) -> set[str]:
        """The paths of the primary evidence."""
        return {loc.path for loc in self.locations if loc.primary}

    def lowest_layer(self, path: str, since: int = 0) -> str | None:
        """The digest of the lowest layer (at index ``since`` or above) where syft found this package's
        primary evidence at ``path``, or None."""
        found = [loc for loc in self.locations if loc.primary and loc.path == path and loc.index >= since]
        return min(found, key=lambda loc: loc.index).layer if found else None


def syft_packages(host: str, ref: str, *, scope: str = "squashed", timeout: float = 600) -> list[SyftPackage]:
    """syft's packages of our seven types for ``registry:HOST/REF``. Raises ``subprocess.CalledProcessError``
    if syft fails, ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sbom.json"
        subprocess.run([str(SYFT), "scan", f"registry:{host}/{ref}", "-o", f"syft-json={out}", "-q",
                        "--scope", scope], check=True, env=env, timeout=timeout, capture_output=True)
        doc = json.loads(out.read_text())
    meta = doc["source"]["metadata"]
    config = json.loads(base64.b64decode(meta["config"]))
    manifest = json.loads(base64.b64decode(meta["manifest"]))
    digests = [layer["digest"] for layer in manifest["layers"]]
    by_diff_id = {diff_id: (digest, i) for i, (diff_id, digest)
                  in enumerate(zip(config["rootfs"]["diff_ids"], digests, strict=True))}
    return [SyftPackage(a["name"], a["version"], a["type"], a.get("purl", ""),
                        tuple(sorted({lic["value"] for lic in a.get("licenses") or ()})),
                        tuple(_location(loc, by_diff_id) for loc in a["locations"]))
            for a in doc["artifacts"] if a["type"] in TYPES]


def _location(loc: dict, by_diff_id: dict[str, tuple[str, int]]) -> Location:
    """A syft location with its layer's digest and index. Raises KeyError for a layer ID that is not one of
    the image's diff IDs."""
    digest, index = by_diff_id[loc["layerID"]]
    return Location(loc["path"].lstrip("/"), digest, index,
                    loc.get("annotations", {}).get("evidence") == "primary")
