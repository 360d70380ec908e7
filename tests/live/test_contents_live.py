"""Layer contents straight from the real registry: files() against ``tar -tv`` on the same blob,
merged filesystems, diff, read_file, and safe extraction of hostile layers pushed to the registry."""

from __future__ import annotations

import os
import subprocess

import pytest
from digests import sha256_digest
from layerkit import build_layer, compress, gzip_bomb, info, raw_tar
from pushing import push_image

import regexplore as rx


@pytest.fixture(scope="module")
def reg(registry_sandbox):
    with rx.Registry(registry_sandbox.url) as r:
        yield r


def push_layers(reg, repo, tag, layers):
    """Push an image made of ``layers`` [(compressed bytes, diff_id, media type)] with plain requests;
    returns ``repo:tag``."""
    return push_image(reg.base_url, repo, tag, [(data, mt) for data, _, mt in layers],
                      diff_ids=[d for _, d, _ in layers]).ref


def tar_tv(path, compression):
    flag = {"gzip": "-z", "zstd": "--zstd", "none": ""}[compression]
    out = subprocess.run(["tar", "-tv", "--numeric-owner", "--full-time", *([flag] if flag else []), "-f", path],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


@pytest.mark.parametrize("ref", ["library/webapp:latest", "demo/zstd:latest", "demo/busybox:1.0"])
def test_files_equal_tar_tv_on_the_same_blob(reg, registry_sandbox, skopeo, tmp_path, ref):
    repo, tag = ref.split(":")
    skopeo("copy", f"docker://{registry_sandbox.host}/{ref}", f"dir:{tmp_path}", raw=True)
    df = reg.files(ref)
    for layer in reg.layers(ref).itertuples():
        blob = tmp_path / layer.digest.split(":")[1]
        lines = tar_tv(str(blob), layer.compression)
        rows = df[df["layer"] == layer.digest]
        assert len(rows) == len(lines)
        for row, line in zip(rows.itertuples(), lines):
            fields = line.split(None, 5)
            name = fields[5]
            if row.type == "symlink":
                name = name.split(" -> ")[0]
            if row.type == "hardlink":
                name = name.split(" link to ")[0]
            assert name.rstrip("/").removeprefix("./") == row.path
            assert int(fields[2]) == (row.size if row.type == "file" else int(fields[2]))
            assert fields[1] == f"{row.uid}/{row.gid}"
            kinds = {"file": "-", "dir": "d", "symlink": "l", "hardlink": "h", "other": fields[0][0]}
            assert fields[0][0] == kinds[row.type]


def test_files_of_one_layer_blob(reg):
    layer = reg.layers("demo/zstd:latest")
    zstd = layer[layer["compression"] == "zstd"]["digest"].iloc[0]
    df = reg.files(f"demo/zstd@{zstd}")
    assert set(df["layer"]) == {zstd} and len(df) > 0
    assert df.equals(reg.files("demo/zstd:latest").query("layer == @zstd").reset_index(drop=True))


def test_merged_applies_whiteouts(reg):
    all_rows = reg.files("library/webapp:latest")
    final = reg.files("library/webapp:latest", merged=True)
    assert all_rows["whiteout"].notna().any()
    assert final["whiteout"].isna().all()
    removed = [p.replace(".wh.", "") for p in all_rows.loc[all_rows["whiteout"] == "file", "path"]]
    assert removed and not set(removed) & set(final["path"])
    assert final["path"].is_unique


def test_diff_between_tags(reg):
    d = reg.diff("demo/busybox:1.0", "demo/busybox:1.1")
    assert "etc/os-release" in d.loc[d["change"] == "modified", "path"].tolist()
    assert reg.read_file("demo/busybox:1.0", "etc/os-release") != reg.read_file("demo/busybox:1.1", "etc/os-release")
    same = reg.diff("demo/busybox:1.1", "demo/busybox:latest")
    assert same.empty and list(same.columns) == ["path", "change", "size_a", "size_b"]


def test_read_file_reads_only_the_layers_it_needs(reg):
    layers = reg.layers("library/webapp:latest")
    final = reg.files("library/webapp:latest", merged=True)
    top = final[(final["layer"] == layers["digest"].iloc[-1]) & (final["type"] == "file")]["path"].iloc[0]
    reg.clear_trace()
    data = reg.read_file("library/webapp:latest", top)
    blob_gets = reg.trace[reg.trace["url"].str.contains("/blobs/sha256")]
    assert len(data) == int(final.set_index("path").loc[top, "size"])
    assert blob_gets["url"].str.contains(layers["digest"].iloc[-1]).sum() >= 1
    assert not blob_gets["url"].str.contains(layers["digest"].iloc[0]).any()
    with pytest.raises(FileNotFoundError):
        reg.read_file("library/webapp:latest", "no/such/file")


def test_extract_applies_whiteouts_atomically(reg, tmp_path):
    dest = tmp_path / "root"
    reg.extract("library/webapp:latest", str(dest))
    final = reg.files("library/webapp:latest", merged=True)
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*")}
    assert on_disk == set(final["path"])
    with pytest.raises(FileExistsError):
        reg.extract("library/webapp:latest", str(dest))


HOSTILE = {
    "dotdot": [(info("../escape.txt", "file", size=4), b"evil")],
    "absolute": [(info("/tmp/regexplore-abs-escape", "file", size=4), b"evil")],
    "symlink-escape": [info("link", "symlink", linkname="../../.."),
                       (info("link/escape.txt", "file", size=4), b"evil")],
    "hardlink-escape": [info("hl", "hardlink", linkname="../outside")],
    "device": [info("dev/null", "char")],
    # whiteout names that name no file (containerd: "invalid whiteout name"): ".wh.." would remove "a"'s
    # parent, ".wh..." the folder above the root, ".wh." the folder itself
    "whiteout-dot": [info("a/", "dir"), info("a/.wh..")],
    "whiteout-dotdot": [info(".wh...")],
    "whiteout-empty": [info("a/", "dir"), info("a/.wh.")],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_nothing_is_written(empty_sandbox, tmp_path, name):
    reg = rx.Registry(empty_sandbox.url)
    tar = raw_tar(HOSTILE[name])
    ref = push_layers(reg, "hostile/x", name, [(compress(tar, "gzip"), sha256_digest(tar),
                                                  "application/vnd.oci.image.layer.v1.tar+gzip")])
    before = set(os.listdir(tmp_path))
    with pytest.raises(rx.UnsafeLayer) as info_:
        reg.extract(ref, str(tmp_path / "root"))
    assert info_.value.entry
    assert set(os.listdir(tmp_path)) == before  # no dest, no temp folder, nothing beside it
    assert not os.path.exists("/tmp/regexplore-abs-escape")


def test_gzip_bomb_is_capped(empty_sandbox):
    reg = rx.Registry(empty_sandbox.url)
    bomb = gzip_bomb(64 * 1024 * 1024)
    gzip_layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    ref = push_layers(reg, "hostile/bomb", "v", [(bomb, "sha256:" + "0" * 64, gzip_layer)])
    with pytest.raises(rx.UnsafeLayer, match="cap|over"):
        reg.files(ref, max_bytes=8 * 1024 * 1024)


def test_corrupted_layer_in_registry_is_a_digest_mismatch(empty_sandbox):
    reg = rx.Registry(empty_sandbox.url)
    data, diff_id = build_layer({"a.txt": b"hello\n"})
    ref = push_layers(reg, "bad/x", "v", [(data, diff_id, "application/vnd.oci.image.layer.v1.tar+gzip")])
    layer = reg.layers(ref)["digest"].iloc[0]
    # rewrite the stored blob behind the registry's back (the filesystem driver's layout)
    hexd = layer.split(":")[1]
    stored = os.path.join(empty_sandbox.storage, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")
    other, _ = build_layer({"a.txt": b"HELLO\n"})
    with open(stored, "wb") as f:
        f.write(other)
    with pytest.raises(rx.DigestMismatch):
        reg.files(ref)


def _push_tar(reg, repo, tag, tar):
    return push_layers(reg, repo, tag, [(compress(tar, "gzip"), sha256_digest(tar),
                                         "application/vnd.oci.image.layer.v1.tar+gzip")])


def test_invalid_whiteout_names_are_refused_by_every_view(empty_sandbox):
    reg = rx.Registry(empty_sandbox.url)
    ref = _push_tar(reg, "hostile/wh", "v", raw_tar([(info("a/f", "file"), b"x"), info("a/.wh..")]))
    assert ".wh.." in set(reg.files(ref)["path"].str.rpartition("/")[2])   # listed as tar -t lists it
    with pytest.raises(rx.UnsafeLayer, match="invalid whiteout"):
        reg.files(ref, merged=True)
    with pytest.raises(rx.UnsafeLayer, match="invalid whiteout"):
        reg.read_file(ref, "b")


def test_a_corrupt_header_mid_layer_is_an_error_not_a_short_listing(empty_sandbox, tmp_path):
    """tarfile would end the archive at a bad header after the first member (listing only "a" here);
    GNU tar reports it, Go's archive/tar (Docker, containerd) fails the layer: so does regexplore."""
    tar = bytearray(raw_tar([(info(n, "file"), n.encode() * 10) for n in ("a", "b", "c", "d")]))
    headers = [i for i in range(0, len(tar), 512) if tar[i:i + 2] in (b"b\0", b"c\0")]
    tar[headers[0] + 148:headers[0] + 156] = b"0000000\0"               # b's checksum field, now wrong
    (tmp_path / "layer.tar").write_bytes(tar)
    gnu = subprocess.run(["tar", "-tf", str(tmp_path / "layer.tar")], capture_output=True, text=True)
    assert gnu.returncode != 0 and "header" in gnu.stderr.lower()
    reg = rx.Registry(empty_sandbox.url)
    ref = _push_tar(reg, "corrupt/hdr", "v", bytes(tar))
    with pytest.raises(rx.RegistryError, match="bad tar header at offset"):
        reg.files(ref)
    with pytest.raises(rx.RegistryError, match="bad tar header"):
        reg.extract(ref, str(tmp_path / "root"))
    assert not (tmp_path / "root").exists()
    with pytest.raises(rx.RegistryError, match="bad tar header"):
        reg.read_file(ref, "c")


def test_a_tar_cut_inside_a_file_is_a_registry_error_everywhere(empty_sandbox, tmp_path):
    whole = raw_tar([(info("a", "file"), os.urandom(3000)), (info("b", "file"), b"b")])
    cut = whole[: 512 + 1536]                                        # a's header and half its data
    reg = rx.Registry(empty_sandbox.url)
    ref = _push_tar(reg, "corrupt/cut", "v", cut)
    for call in (lambda: reg.extract(ref, str(tmp_path / "root")), lambda: reg.read_file(ref, "a"),
                 lambda: reg.diff(ref, ref), lambda: reg.files(ref)):
        with pytest.raises(rx.RegistryError, match="corrupt or truncated"):
            call()
    assert not (tmp_path / "root").exists()


def test_keep_absolute_links_never_touches_a_folder_outside(empty_sandbox, tmp_path):
    """A later layer turns "d" into a kept absolute link to a host folder: the modes and mtimes of the
    directories extracted under "d" before must not be applied through it."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    os.chmod(host / "sub", 0o755)
    os.utime(host / "sub", (1_800_000_000, 1_800_000_000))
    reg = rx.Registry(empty_sandbox.url)
    l1 = raw_tar([info("d/", "dir"), info("d/sub/", "dir", mode=0o700, mtime=12345)])
    l2 = raw_tar([info("d", "symlink", linkname=str(host))])
    ref = push_layers(reg, "keep/links", "v", [(compress(t, "gzip"), sha256_digest(t),
                                                "application/vnd.oci.image.layer.v1.tar+gzip") for t in (l1, l2)])
    reg.extract(ref, str(tmp_path / "root"), absolute_links="keep")
    assert os.readlink(tmp_path / "root" / "d") == str(host)
    st = os.stat(host / "sub")
    assert oct(st.st_mode & 0o777) == oct(0o755) and int(st.st_mtime) == 1_800_000_000


def _gz(tar):
    return (compress(tar, "gzip"), sha256_digest(tar), "application/vnd.oci.image.layer.v1.tar+gzip")


def test_merged_follows_a_symlinked_parent_like_extract(empty_sandbox, tmp_path):
    """Layer 2 writes through "a -> b" from layer 1: the final filesystem has b/new, not a/new, and the
    whiteouts a/.wh.file and a/.wh..wh..opq act on b (tar extraction; containerd resolves parents so)."""
    reg = rx.Registry(empty_sandbox.url)
    base = raw_tar([info("b/", "dir"), (info("b/file"), b"old"), (info("b/keep"), b"k"),
                    info("a", "symlink", linkname="b")])
    top = raw_tar([(info("a/new"), b"new"), info("a/.wh.file")])
    ref = push_layers(reg, "links/parent", "v", [_gz(base), _gz(top)])
    merged = reg.files(ref, merged=True)
    assert list(merged["path"]) == ["a", "b", "b/keep", "b/new"]
    reg.extract(ref, str(tmp_path / "r1"))
    assert sorted(str(p.relative_to(tmp_path / "r1")) for p in (tmp_path / "r1").rglob("*")) == list(merged["path"])
    opaque = push_layers(reg, "links/opaque", "v", [_gz(base), _gz(raw_tar([info("a/.wh..wh..opq")]))])
    assert list(reg.files(opaque, merged=True)["path"]) == ["a", "b"]
    reg.extract(opaque, str(tmp_path / "r2"))
    assert sorted(str(p.relative_to(tmp_path / "r2")) for p in (tmp_path / "r2").rglob("*")) == ["a", "b"]


def test_diff_sees_content_through_hardlinks(empty_sandbox):
    """Same hardlink rows, different bytes behind them (read_file tells): diff reports the hardlink."""
    reg = rx.Registry(empty_sandbox.url)
    later = raw_tar([info("h", "hardlink", linkname="f"), (info("f"), b"v2")])   # h keeps the old f
    c = push_layers(reg, "links/c", "v", [_gz(raw_tar([(info("f"), b"v1")])), _gz(later)])
    d = push_layers(reg, "links/d", "v", [_gz(raw_tar([(info("f"), b"v0")])), _gz(later)])
    assert reg.read_file(c, "h") == b"v1" and reg.read_file(d, "h") == b"v0"
    changed = reg.diff(c, d)
    assert list(changed["path"]) == ["h"] and list(changed["change"]) == ["modified"]
    assert reg.diff(c, c).empty
