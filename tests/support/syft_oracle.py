"""syft 1.18.1 as the oracle of the package catalogers: scan an image straight from the test registry and
return its packages of regexplore's seven types, with the layer each was found in.

``syft_packages(host, "repo:tag", scope="all-layers")`` runs
``SYFT_CHECK_FOR_APP_UPDATE=false syft scan registry:HOST/repo:tag -o syft-json=FILE -q --scope all-layers``
(syft picks plain HTTP for 127.0.0.1 itself) and maps syft's layer IDs (diff IDs) to the layers' digests
through the image config's ``rootfs.diff_ids``.
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
class SyftPackage:
    """One syft package: ``layer`` is the digest of the lowest layer where its primary evidence was found."""

    name: str
    version: str
    type: str
    purl: str
    paths: tuple[str, ...]
    layer: str | None


def _layer_of(locations: list[dict], diff_to_digest: dict[str, str], order: list[str]) -> str | None:
    primary = [loc for loc in locations if loc.get("annotations", {}).get("evidence") == "primary"] or locations
    digests = [diff_to_digest[loc["layerID"]] for loc in primary if loc.get("layerID") in diff_to_digest]
    return min(digests, key=order.index) if digests else None


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
    order = [layer["digest"] for layer in manifest["layers"]]
    diff_to_digest = dict(zip(config["rootfs"]["diff_ids"], order, strict=True))
    return [SyftPackage(a["name"], a["version"], a["type"], a.get("purl", ""),
                        tuple(loc["path"] for loc in a["locations"]), _layer_of(a["locations"], diff_to_digest, order))
            for a in doc["artifacts"] if a["type"] in TYPES]
