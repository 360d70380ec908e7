"""Which repositories and images the notebooks show: the demo content's, or ones found in any registry.

The notebooks run against the seeded sandbox, Docker Hub, or any registry named by ``REGEXPLORE_REGISTRY``.
They do not hard-code names: :func:`pick_examples` chooses, and says where the choice came from::

    ex = pick_examples(reg)        # Examples(source='catalog', image='team/api:2.1', multiarch=None, …)
    reg.history(ex.image)

- the sandbox's demo content (every demo repository in the catalog): the demo's names, so the text of
  the notebooks matches what they show;
- Docker Hub (no catalog): a few official images, named below;
- any other registry: up to ``max_repositories`` repositories of its catalog (or of
  ``REGEXPLORE_REPOSITORIES``, comma-separated, for a registry whose catalog is closed), read with
  ``tags(details=True)``, then the roles filled from what is there. A role nothing fits stays ``None``
  (no multi-platform image, no repository with two different images), and the notebooks skip its cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import _env
from ..errors import Denied, NotFound, RegistryError, Unauthorized, Unsupported
from ..model.oci import INDEX_TYPES

#: the platform shown for a multi-platform image when it has it (the default of history() & co.)
_PREFERRED_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class Examples:
    """What a notebook shows. References are ``"repo:tag"`` strings; ``None`` where nothing fits."""

    source: str                      #: "demo", "docker.io", "catalog" or "REGEXPLORE_REPOSITORIES"
    repositories: list[str] = field(default_factory=list)  #: the repositories looked at
    repository: str | None = None    #: a repository with several tags (the one with the most, off the demo)
    many_tags: str | None = None     #: the repository with the most tags (tags over time)
    image: str | None = None         #: an image with the most layers (history, layers, files)
    multiarch: str | None = None     #: a multi-platform image (platforms)
    platform: str | None = None      #: the platform of ``multiarch`` shown (linux/amd64 if it has it)
    download: str | None = None      #: the smallest image (download with progress)
    pair: tuple[str, str] | None = None  #: two tags of one repository naming different images (diff)
    inside: str | None = None        #: an image with real packages (notebook 04); None: use ``image``


DEMO = Examples(
    source="demo",
    repositories=["demo/big", "demo/busybox", "demo/debian", "demo/many-tags", "demo/minimal", "demo/multiarch",
                  "demo/pyapp", "demo/zstd", "library/webapp"],
    repository="demo/busybox", many_tags="demo/many-tags", image="library/webapp:latest",
    multiarch="demo/multiarch:latest",
    platform=_PREFERRED_PLATFORM, download="demo/big:latest", pair=("demo/busybox:1.0", "demo/busybox:1.1"),
    inside="demo/pyapp:1.0",
)

#: Docker Hub has no catalog: official images that have carried these tags for years
HUB_EXAMPLES = Examples(
    source="docker.io",
    repositories=["library/alpine", "library/busybox"],
    repository="library/busybox", many_tags="library/alpine", image="library/python:3.12-slim",
    multiarch="library/busybox:latest",
    platform=_PREFERRED_PLATFORM, download="library/busybox:latest",
    pair=("library/alpine:3.19", "library/alpine:3.20"),
)


def pick_examples(reg: Any, repositories: list[str] | None = None, *, max_repositories: int = 20) -> Examples:
    """Choose what to show from ``reg`` (see the module doc). ``repositories`` (or the environment's
    ``REGEXPLORE_REPOSITORIES``) limits the choice to those. Raises :class:`RegistryError` when the
    registry has nothing to show (an empty catalog), or its catalog is closed and no names were given.
    """
    source = "REGEXPLORE_REPOSITORIES"
    if repositories is None:
        env = _env.text("REGEXPLORE_REPOSITORIES") or ""
        repositories = [r.strip() for r in env.split(",") if r.strip()] or None
    if repositories is None:
        if reg.hub is not None:
            return HUB_EXAMPLES
        try:
            names = list(reg.catalog(limit=1000)["repository"])   # enough to recognise the demo
        except (Unauthorized, Denied, NotFound, Unsupported) as exc:  # a closed catalog (not a TLS error…)
            raise RegistryError(f"{reg.name} does not list its repositories ({exc}); name some in "
                                "REGEXPLORE_REPOSITORIES (comma-separated)") from exc
        if set(DEMO.repositories) <= set(names):
            return DEMO
        source, repositories = "catalog", sorted(names)[:max_repositories]
    tags = []
    for repo in repositories:
        try:
            tags.append(reg.tags(repo, details=True))
        except RegistryError:
            if source != "catalog":
                raise  # a name the user gave: say what is wrong with it
            # one repository of the catalog the credentials may not read (or gone since): look elsewhere
    tags = [t for t in tags if len(t)]
    if not tags:
        raise RegistryError(f"no tagged image in {', '.join(repositories) or 'the catalog of ' + reg.name}")
    return _fill_roles(source, [t["repository"].iloc[0] for t in tags], tags, reg)


def _fill_roles(source: str, repositories: list[str], tags: list[Any], reg: Any) -> Examples:
    """The roles from each repository's ``tags(details=True)`` frame (non-empty)."""
    import pandas as pd

    # only container images play a role: an artifact (Helm chart, signature, SBOM) has no os in its config
    images = [t[t["os"].notna()] for t in tags]
    images = [t for t in images if len(t)]
    if not images:
        raise RegistryError(f"no container image (only artifacts) in {', '.join(repositories)}")
    by_count = sorted(images, key=lambda t: (-len(t), t["repository"].iloc[0]))
    # each repository's newest tag ("latest" when it has one) stands for it
    heads = []
    for t in images:
        latest = t[t["tag"] == "latest"]
        newest = t.sort_values(["created", "tag"], na_position="first")
        row = latest.iloc[0] if len(latest) else newest.iloc[-1]
        heads.append(row)
    ref = [f"{row['repository']}:{row['tag']}" for row in heads]

    def platforms_of(row: Any) -> list[str]:  # an artifact entry of an index has no platform
        return [p for p in row["platforms"] if isinstance(p, str)] if isinstance(row["platforms"], list) else []

    multi = [(r, row) for r, row in zip(ref, heads)
             if row["media_type"] in INDEX_TYPES and len(platforms_of(row)) > 1]

    # files(), diff() and download() need layers that are tars the registry serves; read once per tag
    seen_layers: dict[str, tuple[str, ...] | None] = {}

    def layers_of(r: str) -> tuple[str, ...] | None:
        if r not in seen_layers:
            seen_layers[r] = _readable_layers(reg, r)
        return seen_layers[r]

    usable = [(r, row) for r, row in zip(ref, heads) if layers_of(r) is not None]
    if not usable:
        raise RegistryError(f"no image with tar layers the registry serves in {', '.join(repositories)}")
    image = max(usable, key=lambda rr: len(layers_of(rr[0]) or ()))[0]  # the first of the most layered
    sized = [(int(row["size"]), r) for r, row in usable if not pd.isna(row["size"])]
    download = min(sized)[1] if sized else image
    multi = [(r, row) for r, row in multi if layers_of(r) is not None]

    pair = None
    for t in by_count:
        newest_first = t.sort_values(["created", "tag"], ascending=False, na_position="last")
        # the layers each tag shows (an index's default platform) -> the tag: two images that differ only
        # in their config (a label) would show diff() nothing
        seen: dict[tuple[str, ...], str] = {}
        for _, row in newest_first.head(6).iterrows():
            r = f"{row['repository']}:{row['tag']}"
            if (layers := layers_of(r)) is not None:
                seen.setdefault(layers, r)
        if len(seen) >= 2:
            newer, older = list(seen.values())[:2]
            pair = (older, newer)
            break
    multiarch, platform = None, None
    if multi:
        multiarch, row = multi[0]
        plats = platforms_of(row)
        platform = _PREFERRED_PLATFORM if _PREFERRED_PLATFORM in plats else plats[0]
    # the repository with the most tags, preferring one with an image files() can read
    usable_repos = {r.rpartition(":")[0] for r, _ in usable}
    most_frame = next((t for t in by_count if t["repository"].iloc[0] in usable_repos), by_count[0])
    most = most_frame["repository"].iloc[0]
    return Examples(source=source, repositories=list(repositories), repository=most, many_tags=most,
                    image=image, multiarch=multiarch, platform=platform, download=download, pair=pair)


def _readable_layers(reg: Any, ref: str) -> tuple[str, ...] | None:
    """The layer digests of ``ref`` (its default platform), or None when one is not a tar the registry
    serves: an artifact's JSON or text, a foreign / non-distributable layer (fetched from its ``urls``)."""
    try:
        layers = reg.layers(ref)
    except RegistryError:
        return None
    types = [t if isinstance(t, str) else "" for t in layers["media_type"]]  # NA: no media type given
    if any(t and (".tar" not in t or "foreign" in t or "nondistributable" in t) for t in types):
        return None
    return tuple(layers["digest"])
