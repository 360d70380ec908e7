"""A nested archive that fails in a way the zip reader did not list (an encrypted member: RuntimeError)
is one skipped entry, not the loss of the outer archive's packages (review M10); and a jar of many
broken nested archives keeps a bounded skipped list."""

from __future__ import annotations

import io
import struct
import zipfile

from regexplore.content.inside.catalogers import java


def _jar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _manifest(title: str, version: str) -> bytes:
    return f"Manifest-Version: 1.0\r\nImplementation-Title: {title}\r\nImplementation-Version: {version}\r\n".encode()


def _flag_encrypted(data: bytes, name: str) -> bytes:
    """``data`` with the central directory entry of ``name`` flagged encrypted (bit 0), as a zip written
    with a password has it."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", out, at + 28)[0]
        if out[at + 46:at + 46 + length] == name.encode():
            struct.pack_into("<H", out, at + 8, struct.unpack_from("<H", out, at + 8)[0] | 1)
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


def test_encrypted_nested_archive_is_skipped_alone() -> None:
    inner = _jar({"META-INF/MANIFEST.MF": _manifest("inner", "2.0")})
    outer = _flag_encrypted(_jar({"META-INF/MANIFEST.MF": _manifest("outer", "1.0"),
                                  "lib/secret-3.0.jar": inner, "lib/good-2.0.jar": inner}), "lib/secret-3.0.jar")
    with zipfile.ZipFile(io.BytesIO(outer)) as zf:  # the reader itself refuses it so
        try:
            zf.read("lib/secret-3.0.jar")
            raise AssertionError("zipfile read an encrypted member")
        except RuntimeError as exc:
            assert "encrypted" in str(exc)
    ev = java.read("app/app-1.0.war", outer)
    assert [(p.name, p.version) for p in ev.packages] == [("app", "1.0"), ("good", "2.0")]
    assert [s.path for s in ev.skipped] == ["app/app-1.0.war:lib/secret-3.0.jar"]
    assert "encrypted" in ev.skipped[0].reason


def test_many_broken_nested_archives_keep_a_bounded_skipped_list() -> None:
    outer = _jar({"META-INF/MANIFEST.MF": _manifest("outer", "1.0"),
                  **{f"lib/empty{i}.jar": b"" for i in range(1000)}})
    ev = java.read("app/app-1.0.war", outer)
    assert [(p.name, p.version) for p in ev.packages] == [("app", "1.0")]
    assert len(ev.skipped) == java.MAX_SKIPPED + 1, len(ev.skipped)
    assert "and 900 more" in ev.skipped[-1].reason, ev.skipped[-1]
