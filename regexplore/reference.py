"""Image references: ``[registry/]repository[:tag][@digest]``, parsed once into a frozen ``ImageRef``.

Grammar and normalisation follow ``distribution/reference`` (``reference.go``, ``normalize.go``):

- the first ``/``-separated component is a registry host only if it contains ``.`` or ``:``, is
  ``localhost``, or has an uppercase letter (Docker's ``splitDockerDomain``), and can be a host at all:
  one that cannot (``x.y_z``, ``foo_bar.com``: a domain label has no ``_``) but is a valid path
  component is the repository's first component, as in the registry's own grammar (``regexp.go``'s
  optional domain); otherwise the registry is ``docker.io``;
- ``index.docker.io`` is normalised to ``docker.io``; a one-component Docker Hub name gets
  ``library/`` (``python`` → ``docker.io/library/python:latest``);
- repository path components are lowercase ``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or ``-+``;
- a tag is ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``; a digest is ``alg:hex`` (sha256: 64 hex digits).

>>> parse_reference("python")
ImageRef(registry='docker.io', repository='library/python', tag='latest', digest=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

__all__ = ["DOCKER_HUB", "ImageRef", "parse_reference", "split_repository"]

DOCKER_HUB = "docker.io"
_LEGACY_HUB = {"index.docker.io"}  # Docker's legacyDefaultDomain; other Hub host names stay as written

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z"
)  # IPv6 in brackets: hex and ':' only, no zone, no embedded IPv4 (regexp.go ipv6address)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}\Z")  # an image ID, refused as a name (ParseNormalizedNamed)
# go-digest's registered algorithms and the length of their lowercase-hex encoding
_REGISTERED_DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_TOTAL_MAX = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference. ``tag`` and ``digest`` may both be set (``repo:tag@sha256:…``);
    when a digest is present it wins for fetching."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes in ``/v2/<name>/manifests/<reference>``: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form Docker prints: ``python:3.12`` rather than ``docker.io/library/python:3.12``."""
        repo = self.repository
        if self.registry == DOCKER_HUB:
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/"):]
            out = repo
        else:
            out = f"{self.registry}/{repo}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def _repr_html_(self) -> str:
        from html import escape

        parts = [f"<b>{escape(self.registry)}</b>/{escape(self.repository)}"]
        if self.tag:
            parts.append(f":<i>{escape(self.tag)}</i>")
        if self.digest:
            parts.append(f"@<code>{escape(self.digest[:19])}…</code>")
        return "<span class='regexplore-ref'>" + "".join(parts) + "</span>"


# "user:password@" (after a scheme's "//" or at the start) that is not "name:tag@<digest>"
_USERINFO = re.compile(r"(^|//)[^/@]*:[^/@]*@(?!" + _DIGEST.pattern.replace(r"\Z", "") + r"\Z)")


def _shown(raw: str) -> str:
    """``raw`` as error messages may show it: credentials someone typed into it replaced."""
    return _USERINFO.sub(r"\1REDACTED@", raw)


def _check_digest(digest: str, text: str) -> str:
    if not _DIGEST.match(digest):
        raise InvalidReference(f"invalid digest {digest!r} in {text!r}")
    alg, _, hexpart = digest.partition(":")
    size = _REGISTERED_DIGESTS.get(alg)
    if size is not None and len(hexpart) != size:
        raise InvalidReference(f"{alg} digest must have {size} hex digits, got {len(hexpart)} in {text!r}")
    if size is not None and hexpart != hexpart.lower():
        # go-digest's Validate: the encoded part of a registered algorithm is lowercase hex
        raise InvalidReference(f"{alg} digest must be lowercase hex in {text!r}")
    return digest


def is_repository_name(text: str) -> bool:
    """True if ``text`` is a repository path of the grammar (lowercase components such as
    ``library/python``), with no registry host, tag or digest."""
    return bool(text) and all(_COMPONENT.match(c) for c in text.split("/"))


def _names_host(first: str) -> bool:
    """True if ``first``, the first ``/``-separated component of a name, is its registry host: it looks
    like one to Docker (``splitDockerDomain``: a ``.`` or ``:``, ``localhost``, an uppercase letter) and
    is not a repository path component that cannot be a host (``x.y_z``, ``foo_bar.com``: a domain
    label has no ``_``). A host-looking component that is neither stays a host, for its error."""
    if not ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return False
    return bool(_DOMAIN.match(first)) or not _COMPONENT.match(first)


def split_repository(text: str) -> tuple[str, str]:
    """Split ``text`` (no tag/digest) into ``(registry, repository)`` with Docker's rules."""
    first, sep, rest = text.partition("/")
    if sep and _names_host(first):
        registry, repo = first, rest
    else:
        registry, repo = DOCKER_HUB, text
    if registry in _LEGACY_HUB:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    return registry, repo


def parse_reference(text: str | ImageRef, *, default_registry: str | None = None) -> ImageRef:
    """Parse an image reference.

    ``default_registry`` (a host) is used when the text names no registry host, instead of
    ``docker.io`` — this is how ``Registry("127.0.0.1:5000").tags("demo/app")`` reads
    ``demo/app`` (and no ``library/`` prefix is added then).

    Returns an ``ImageRef``; raises ``InvalidReference`` naming the bad part.
    """
    if isinstance(text, ImageRef):
        return text
    if not isinstance(text, str):
        raise InvalidReference(f"an image reference must be a string, got {type(text).__name__}")
    raw = _shown(text)  # what the errors below quote
    text = text.strip()
    if not text:
        raise InvalidReference("empty image reference")
    if _IDENTIFIER.match(text):
        raise InvalidReference(f"a 64-hex-digit image ID is not a repository name: {raw!r}")
    if "://" in text:
        raise InvalidReference(f"an image reference has no scheme: {raw!r}")
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        digest = _check_digest(digest, raw)
    tag = None
    # a tag is after the last ':' that follows the last '/'
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag!r} in {raw!r}")
    if not text:
        raise InvalidReference(f"missing repository name in {raw!r}")
    first, sep, rest = text.partition("/")
    if sep and _names_host(first):
        registry, repo = first, rest
        if not _DOMAIN.match(registry):
            raise InvalidReference(f"invalid registry host {registry!r} in {raw!r}")
        if registry in _LEGACY_HUB:
            registry = DOCKER_HUB
    elif default_registry and default_registry != DOCKER_HUB:
        registry, repo = default_registry, text
    else:
        registry, repo = DOCKER_HUB, text
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    for comp in repo.split("/"):
        if not comp:
            raise InvalidReference(f"empty path component in {raw!r}")
        if not _COMPONENT.match(comp):
            why = "must be lowercase" if comp.lower() != comp else "has characters not allowed"
            raise InvalidReference(f"repository component {comp!r} {why} in {raw!r}")
    if len(f"{registry}/{repo}") > _NAME_TOTAL_MAX:
        raise InvalidReference(f"repository name longer than {_NAME_TOTAL_MAX} characters in {raw!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, repo, tag, digest)
