"""The image's operating system, as syft identifies it (``syft/linux/identify_release.go``, inside.md A.8).

The layer pass keeps the candidate files through :data:`CATALOGERS` (their text, or busybox's version);
:func:`os_release` then takes the first that parses, in syft's order, from the final filesystem with
symlinks followed inside the image (Debian's ``etc/os-release`` -> ``../usr/lib/os-release``).

The answer is a dict in os-release's own vocabulary (``ID``, ``VERSION_ID``, ``ID_LIKE`` as a space
separated string, ``PRETTY_NAME``, ...): every key of an os-release file; for the fall-backs the keys syft
fills (``PRETTY_NAME``, ``NAME``, ``ID``, ``ID_LIKE``, ``VERSION``, ``VERSION_ID``, ``CPE_NAME``)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .model import Cataloger, Evidence

__all__ = ["CATALOGERS", "SOURCES", "os_release", "parse_os_release"]

#: syft's order: the first file that parses wins (busybox last: other distros ship it too)
SOURCES = ("etc/os-release", "usr/lib/os-release", "etc/system-release-cpe", "etc/redhat-release", "bin/busybox")
_TEXT_CAP = 64 * 1024
_BUSYBOX_CAP = 8 * 1024 * 1024
#: the fields syft's Release has: a file giving none of them is no answer (``cmp.Equal(r, Release{})``)
_SYFT_FIELDS = ("PRETTY_NAME", "NAME", "ID", "ID_LIKE", "VERSION", "VERSION_ID", "VERSION_CODENAME", "BUILD_ID",
                "IMAGE_ID", "IMAGE_VERSION", "VARIANT", "VARIANT_ID", "HOME_URL", "SUPPORT_URL", "BUG_REPORT_URL",
                "PRIVACY_POLICY_URL", "CPE_NAME", "SUPPORT_END")
_BUSYBOX = re.compile(rb"BusyBox v[\d.]+")
_RELEASE = re.compile(r"\srelease\s(\d\.\d+)")  # syft's (.*?)\srelease\s(\d\.\d+), the name part by hand


def _read_text(path: str, data: bytes) -> Evidence:
    return Evidence(facts=(("release_file", data.decode("utf-8", "replace")),))


def _read_busybox(path: str, data: bytes) -> Evidence:
    m = _BUSYBOX.search(data)
    return Evidence(facts=(("busybox", m[0].decode("ascii")),)) if m else Evidence()


CATALOGERS = (
    Cataloger("release-files", "os-release", lambda p, mode, size: "whole" if p in SOURCES[:4] else None,
              _read_text, cap=_TEXT_CAP, names=frozenset(p.rpartition("/")[2] for p in SOURCES[:4])),
    Cataloger("busybox", "os-release", lambda p, mode, size: "whole" if p == "bin/busybox" else None,
              _read_busybox, cap=_BUSYBOX_CAP, names=frozenset({"busybox"})),
)


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines of an os-release file, read as syft's parser (``acobaugh/osrelease``) reads them:
    empty, ``#`` and ``=``-less lines skipped; spaces trimmed around key and value; a value holding a ``"``
    whose first and last characters are the same quote loses one quote of each kind at both ends; then
    ``\\"``, ``\\$``, ``\\\\`` and ``\\` `` are unescaped."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line or line[0] == "#" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(" "), value.strip(" ")
        if '"' in value and value[0] == value[-1] and value[0] in "\"'":
            value = value.removeprefix("'").removeprefix('"').removesuffix("'").removesuffix('"')
        for escaped, plain in (('\\"', '"'), ("\\$", "$"), ("\\\\", "\\"), ("\\`", "`")):
            value = value.replace(escaped, plain)
        out[key] = value
    return out


def _simple(pretty: str, name: str, version: str, cpe: str = "") -> dict[str, str]:
    out = {"PRETTY_NAME": pretty, "NAME": name, "ID": name, "ID_LIKE": name, "VERSION": version,
           "VERSION_ID": version}
    return {**out, "CPE_NAME": cpe} if cpe else out


def _from_os_release(text: str) -> dict[str, str] | None:
    values = parse_os_release(text)
    return values if any(values.get(k) for k in _SYFT_FIELDS) else None


def _from_cpe(text: str) -> dict[str, str] | None:
    """syft's ``cpe:/o:(.*?):.*?:(.*?):.*?$`` read by hand (the backtracking regex took ~n^4 on ``:`` runs):
    Go's ``$`` without ``(?m)`` is the end of the text and ``.`` stops at a newline, so only the last line
    counts; its first ``cpe:/o:`` followed by three ``:`` gives vendor and version. None otherwise."""
    line = text.rpartition("\n")[2]
    at = line.find("cpe:/o:")
    parts = line[at + len("cpe:/o:"):].split(":", 3) if at >= 0 else []
    return _simple(parts[0], parts[0].lower(), parts[2], line[at:]) if len(parts) == 4 else None


def _from_redhat(text: str) -> dict[str, str] | None:
    """syft's ``(.*?)\\srelease\\s(\\d\\.\\d+)``: the first `` release x.y`` and its line's text before it as
    the name (found by one linear search, where the lazy prefix backtracked quadratically). None without one."""
    m = _RELEASE.search(text)
    if m is None:
        return None
    name = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
    return _simple(name, name.lower(), m[1])


_PARSERS: dict[str, Callable[[str], dict[str, str] | None]] = {
    "etc/os-release": _from_os_release, "usr/lib/os-release": _from_os_release,
    "etc/system-release-cpe": _from_cpe, "etc/redhat-release": _from_redhat,
}


def os_release(facts_at: Callable[[str], dict]) -> dict[str, str] | None:
    """The image's release from ``facts_at(path)``: the facts kept of the final filesystem's file at
    ``path`` (symlinks followed; ``{}`` when absent). The first of :data:`SOURCES` that parses wins;
    returns None when none does."""
    for path in SOURCES:
        facts = facts_at(path)
        if path == "bin/busybox":
            found = facts.get("busybox")
            if found:
                return _simple(found, "busybox", found.split(" ")[1].replace("v", ""))
        elif "release_file" in facts and (release := _PARSERS[path](facts["release_file"])) is not None:
            return release
    return None
