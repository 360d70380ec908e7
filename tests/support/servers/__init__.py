"""Test servers for regexplore: a JWT token server and a fault-injecting proxy (with an S3-like
store), plus small helpers to make TLS material and to put a tiny image into a registry.

See :mod:`servers.tokenserver` and :mod:`servers.faultproxy` for the APIs, and :mod:`servers.loopback` for how
they all run (one free-port, daemon-thread server).
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import tarfile
from pathlib import Path
from typing import Any

from digests import sha256_digest
from pushing import DOCKER_MANIFEST, PushedImage, push_image

from .faultproxy import FaultProxy, S3LikeStore
from .loopback import LoopbackServer, serve, stop
from .tokenserver import TokenServer

__all__ = ["FaultProxy", "LoopbackServer", "S3LikeStore", "TokenServer", "make_client_ca", "push_tiny_image",
           "TinyImage", "serve", "stop"]


def make_client_ca(folder: Path, client_cn: str = "regexplore-test-client") -> dict[str, str]:
    """A CA and a client certificate signed by it (for the registry's ``http.tls.clientcas``).

    Returns paths: ``ca`` (PEM), ``cert`` (client PEM), ``key`` (client key PEM), and
    ``other_cert``/``other_key``: a self-signed client certificate the CA did not sign.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=2)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(k: Any) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("regexplore test client CA")).issuer_name(
        name("regexplore test client CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256()))

    def client(issuer_name: x509.Name, signer: Any, key: Any) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(name(client_cn)).issuer_name(issuer_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(later)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(signer, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "cert": client(ca.subject, ca_key, key).public_bytes(serialization.Encoding.PEM),
        "key": pem_key(key),
        "other_cert": client(name("intruder"), other_key, other_key).public_bytes(serialization.Encoding.PEM),
        "other_key": pem_key(other_key),
    }
    out = {}
    for label, data in files.items():
        p = folder / f"client-{label}.pem"
        p.write_bytes(data)
        out[label] = str(p)
    return out


TinyImage = PushedImage  # what push_tiny_image returns


def push_tiny_image(base_url: str, repo: str = "demo/tiny", tag: str = "v1", *, payload: bytes = b"hello\n" * 200,
                    verify: bool | str = True, auth: Any = None) -> PushedImage:
    """Push a one-layer Docker schema 2 image (``hello.txt`` holding ``payload``) with plain ``requests``.

    ``auth`` is anything ``requests`` accepts (e.g. ``("user", "pw")`` for an htpasswd registry).
    Returns the :class:`pushing.PushedImage`; raises ``requests.HTTPError`` if the registry refuses.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(payload), 1_600_000_000, 0o644
        tar.addfile(info, io.BytesIO(payload))
    layer = buf.getvalue()
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
              "history": [{"created_by": "regexplore test"}]}
    return push_image(base_url, repo, tag, [(layer, "application/vnd.docker.image.rootfs.diff.tar")], config=config,
                      manifest_media_type=DOCKER_MANIFEST, indent=3, auth=auth, verify=verify)


def non_loopback_ip() -> str | None:
    """An IPv4 address of this machine that is not loopback (for 'plain http to a remote host' tests)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent for UDP connect
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(ip).is_loopback else ip
