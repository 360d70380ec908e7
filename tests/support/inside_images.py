"""Build and push test images made of REAL content, for the inside-an-image tests (shared by the catalogers'
branches). One call::

    image = build_image(registry.url, "inside/deb", "v1", layers=[
        {"var/lib/dpkg/status": status_bytes},
        Layer({"usr/lib/python3/dist-packages/a.dist-info/METADATA": meta}, whiteouts=["opt/old"], opaque=["srv"]),
    ])

Each layer is a ``{path: bytes}`` dict or a :class:`Layer` (files plus whiteouts / opaque dirs / symlinks);
the builders are :func:`layerkit.build_layer` and :func:`pushing.push_image` underneath. The helpers below
read the content this machine really has (its dpkg database, the wheels of the venv, npm's own modules).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import layerkit
import pushing

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DPKG_STATUS = Path("/var/lib/dpkg/status")
NPM_MODULES = Path("/usr/lib/node_modules/npm/node_modules")
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
DEBIAN_12 = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'


@dataclass
class Layer:
    """One layer: regular ``files`` (path -> bytes), ``whiteouts`` (paths deleted from lower layers),
    ``opaque`` directories (their lower content hidden) and ``symlinks`` (path -> target)."""

    files: Mapping[str, bytes] = field(default_factory=dict)
    whiteouts: Sequence[str] = ()
    opaque: Sequence[str] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)


def build_image(registry_url: str, repo: str, tag: str, layers: Sequence[Layer | Mapping[str, bytes]]
                ) -> pushing.PushedImage:
    """Push an image of ``layers`` (bottom first, gzip) to ``registry_url`` as ``repo:tag``; returns what was
    pushed (``layer_digests`` in layer order). Raises ``requests.HTTPError`` if the registry refuses."""
    blobs, diff_ids = [], []
    for spec in layers:
        spec = spec if isinstance(spec, Layer) else Layer(files=spec)
        blob, diff_id = layerkit.build_layer(dict(spec.files), whiteouts=spec.whiteouts, opaque=spec.opaque,
                                             symlinks=dict(spec.symlinks))
        blobs.append((blob, GZIP_LAYER))
        diff_ids.append(diff_id)
    return pushing.push_image(registry_url, repo, tag, blobs, diff_ids=diff_ids)


def dpkg_stanzas() -> list[bytes]:
    """This machine's dpkg status file split into its stanzas (each ending with a blank line)."""
    return [s.strip(b"\n") + b"\n\n" for s in DPKG_STATUS.read_bytes().split(b"\n\n") if s.strip()]


def copyright_files(names: Sequence[str]) -> dict[str, bytes]:
    """``usr/share/doc/NAME/copyright`` of this machine for each package NAME that has one (not a symlink)."""
    out = {}
    for name in names:
        path = Path("/usr/share/doc") / name / "copyright"
        if path.is_file() and not path.is_symlink() and not path.parent.is_symlink():
            out[f"usr/share/doc/{name}/copyright"] = path.read_bytes()
    return out


def dist_infos(prefix: str = "usr/lib/python3/dist-packages") -> dict[str, bytes]:
    """The METADATA of every wheel pip installed in this venv, at ``prefix/NAME.dist-info/METADATA``."""
    return {f"{prefix}/{p.parent.name}/METADATA": p.read_bytes()
            for p in sorted(SITE_PACKAGES.glob("*.dist-info/METADATA"))}


def npm_package_jsons(prefix: str = "usr/lib/node_modules/npm/node_modules") -> dict[str, bytes]:
    """Every package.json npm installed under its own node_modules, at the same relative path."""
    return {f"{prefix}/{p.relative_to(NPM_MODULES)}": p.read_bytes()
            for p in sorted(NPM_MODULES.rglob("package.json")) if p.is_file()}
