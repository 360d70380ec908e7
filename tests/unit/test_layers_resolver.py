"""The one symlink resolver of regexplore.content.layers (layers/resolve.py), on its own and through merge,
read_file and extract (which must agree where their rules are the same). No network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from layerkit import info, raw_tar

from regexplore.content import layers as L
from regexplore.content.layers.resolve import (
    MAX_SYMLINK_HOPS,
    EscapesRoot,
    SymlinkLoop,
    join_link,
    resolve,
)
from regexplore.errors import UnsafeLayer


def _links(table: dict[str, str]):
    """A step over a tree given as {canonical path: symlink target}; every other path is a folder."""
    def step(node: str, name: str) -> tuple[str, str | None]:
        path = f"{node}/{name}" if node else name
        return path, table.get(path)
    return step


def _resolve(parts: str, table: dict[str, str], **kw) -> str:
    return "/".join(resolve(parts.split("/"), "", _links(table), **kw))


# --------------------------------------------------------------------------------- the resolver alone
def test_a_symlinked_parent_is_followed_and_the_last_component_only_on_request() -> None:
    table = {"a": "b", "b/l": "target"}
    assert _resolve("a/x", table) == "b/x"
    assert _resolve("a/l", table) == "b/l"  # the last component is not followed...
    assert _resolve("a/l", table, follow_last=True) == "b/target"  # ...unless asked
    assert _resolve("a/c/d", {"a": "b", "b/c": "../e"}) == "e/d"  # chains, relative to the link's folder


def test_absolute_links_are_re_rooted() -> None:
    assert _resolve("etc/l/x", {"etc/l": "/usr/lib"}) == "usr/lib/x"
    assert _resolve("d/l", {"d/l": "//usr///lib/./"}, follow_last=True) == "usr/lib"


def test_dotdot_is_clamped_at_the_root_or_refused() -> None:
    table = {"a/up": "../../../../etc"}
    assert _resolve("a/up/passwd", table) == "etc/passwd"
    assert _resolve("../../x", {}) == "x"
    with pytest.raises(EscapesRoot):
        _resolve("a/up/passwd", table, on_escape="raise")
    with pytest.raises(EscapesRoot):
        _resolve("../x", {}, on_escape="raise")
    assert _resolve("a/../x", {}, on_escape="raise") == "x"  # inside all the way: fine


def test_dotdot_goes_up_from_where_the_link_led_not_lexically() -> None:
    # l -> a/b, so l/.. is a (the kernel's rule), not "." as a lexical clean of "l/.." would say
    assert _resolve("l/../x", {"l": "a/b"}) == "a/x"
    assert _resolve("m/f", {"l": "a/b", "m": "l/../c"}) == "a/c/f"


def test_literal_dotdot_is_a_name_of_the_path_but_not_of_a_link_target() -> None:
    assert _resolve("a/../x", {}, literal_dotdot=True) == "a/../x"
    assert _resolve("l/x", {"l": "a/../b"}, literal_dotdot=True) == "b/x"


def test_loops_are_bounded() -> None:
    with pytest.raises(SymlinkLoop):
        _resolve("a/x", {"a": "b", "b": "a"})
    with pytest.raises(SymlinkLoop):
        _resolve("self/x", {"self": "self"})
    with pytest.raises(SymlinkLoop):
        _resolve("l", {"l": "l"}, follow_last=True)
    assert _resolve("l", {"l": "l"}) == "l"  # not followed: no loop


def test_a_chain_of_exactly_the_hop_limit_resolves_one_more_does_not() -> None:
    chain = {f"l{k}": f"l{k + 1}" for k in range(MAX_SYMLINK_HOPS)}  # l0 -> l1 -> ... -> l40
    assert _resolve("l0/x", chain) == f"l{MAX_SYMLINK_HOPS}/x"
    chain[f"l{MAX_SYMLINK_HOPS}"] = "end"
    with pytest.raises(SymlinkLoop):
        _resolve("l0/x", chain)


@pytest.mark.parametrize(("link_dir", "target", "rest", "expected"), [
    ("a/b", "c", "x", "a/b/c/x"),
    ("a/b", "../c", "", "a/c"),
    ("a/b", "../../../../c", "x", "c/x"),
    ("a/b", "/etc/hosts", "", "etc/hosts"),
    ("", "./x/./y/", "../z", "x/z"),
    ("a", "..", "", ""),
])
def test_join_link_is_one_lexical_hop_inside_the_root(link_dir: str, target: str, rest: str, expected: str) -> None:
    assert join_link(link_dir, target, rest) == expected


# ------------------------------------------------------------------------ merge, read_file and extract
def test_merge_and_extract_put_a_member_under_a_symlinked_parent_at_the_same_place(tmp_path: Path) -> None:
    layer = raw_tar([info("a", "dir"), info("l", "symlink", linkname="/a"), info("d", "symlink", linkname="l/.."),
                     (info("l/x"), b"through l"), (info("d/a/y"), b"through d")])
    merged = {e.path: e.type for e in L.merge([list(L.iter_entries(layer))])}
    L.extract([layer], tmp_path)
    on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert {"a/x", "a/y"} <= set(merged) and {"a/x", "a/y"} <= on_disk
    assert set(merged) == on_disk
    assert (tmp_path / "a/y").read_bytes() == b"through d"


def test_merge_follows_dotdot_after_a_link_as_extract_does(tmp_path: Path) -> None:
    layer = raw_tar([info("a", "dir"), info("a/b", "dir"), info("a/c", "dir"), info("l", "symlink", linkname="a/b"),
                     info("m", "symlink", linkname="l/../c"), (info("m/f"), b"in a/c")])
    merged = {e.path for e in L.merge([list(L.iter_entries(layer))])}
    L.extract([layer], tmp_path)
    assert "a/c/f" in merged and "c/f" not in merged
    assert (tmp_path / "a/c/f").read_bytes() == b"in a/c"
    assert merged == {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}


def test_merge_leaves_a_looping_parent_as_named_and_extract_refuses_it(tmp_path: Path) -> None:
    layer = raw_tar([info("p", "symlink", linkname="q"), info("q", "symlink", linkname="p"), (info("p/x"), b"x")])
    merged = {e.path for e in L.merge([list(L.iter_entries(layer))])}
    assert merged == {"p", "q", "p/x"}
    with pytest.raises(UnsafeLayer, match="too many levels") as exc:
        L.extract([layer], tmp_path / "root")
    assert exc.value.entry == "p/x"


def test_merge_clamps_what_extract_refuses(tmp_path: Path) -> None:
    layer = raw_tar([info("d", "dir"), info("d/up", "symlink", linkname="../../etc"), (info("d/up/passwd"), b"x")])
    merged = {e.path for e in L.merge([list(L.iter_entries(layer))])}
    assert "etc/passwd" in merged  # chroot semantics: .. stops at the root
    with pytest.raises(UnsafeLayer, match="outside"):
        L.extract([layer], tmp_path / "root")
    assert not os.path.exists(tmp_path / "etc")


def test_read_file_follows_absolute_relative_and_parent_links_inside_the_root() -> None:
    base = raw_tar([info("usr", "dir"), info("usr/lib", "dir"), (info("usr/lib/os-release"), b"ID=x\n"),
                    info("lib", "symlink", linkname="usr/lib"),
                    info("etc", "dir"), info("etc/os-release", "symlink", linkname="../../../lib/os-release"),
                    info("etc/abs", "symlink", linkname="/lib/../lib/os-release"),
                    info("loop", "symlink", linkname="loop")])
    assert L.read_file([base], "lib/os-release") == b"ID=x\n"  # a symlinked parent
    assert L.read_file([base], "etc/os-release") == b"ID=x\n"  # .. clamped at the root, then lib -> usr/lib
    assert L.read_file([base], "/etc/abs") == b"ID=x\n"  # absolute, re-rooted
    with pytest.raises(OSError, match="too many levels"):
        L.read_file([base], "loop")
