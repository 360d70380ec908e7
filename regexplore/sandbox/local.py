"""``LocalRegistry``: the real registry binary on loopback, for notebooks, demos and tests.

It runs CNCF distribution (Debian's ``docker-registry``, or ``registry`` from distribution's own builds) on a
free 127.0.0.1 port with a throw-away filesystem storage, optionally with htpasswd Basic auth, TLS (a CA and a
server certificate generated on the fly) or token auth, and optionally seeds it with regexplore's
deterministic demo content (:mod:`regexplore.sandbox.seed`)::

    with LocalRegistry(seed=True) as sandbox:
        reg = sandbox.client()
        reg.catalog()

The registry's own log goes to ``sandbox.log_path`` (a file in the temporary folder), never to the notebook.
``stop()`` terminates the process (then kills it if it does not exit) and removes the temporary folder; a
forgotten sandbox is stopped when it is garbage collected or when the interpreter exits.

This module never imports pandas, ipywidgets or tqdm; ``cryptography`` and ``bcrypt`` are imported only when
TLS or auth is asked for.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .. import _env

__all__ = ["LocalRegistry", "RegistryBinaryMissing", "find_registry_binary", "INSTALL_HINT"]

INSTALL_HINT = (
    "the registry binary was not found: install it with `apt-get install docker-registry` (Debian/Ubuntu), "
    "or put distribution's `registry` binary on PATH, or set REGEXPLORE_REGISTRY_BIN to its path"
)
_BINARY_NAMES = ("docker-registry", "registry")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5


class RegistryBinaryMissing(FileNotFoundError):
    """The registry binary is not installed; the message says how to install it."""


def find_registry_binary() -> str:
    """Return the path of the registry binary.

    ``REGEXPLORE_REGISTRY_BIN`` wins when set (it must name an executable file); otherwise ``docker-registry``
    then ``registry`` are looked up on ``PATH``. Raises ``RegistryBinaryMissing`` with the install hint.
    """
    env = _env.text("REGEXPLORE_REGISTRY_BIN")
    if env:
        found = shutil.which(env)
        if found:
            return found
        raise RegistryBinaryMissing(f"REGEXPLORE_REGISTRY_BIN={env!r} is not an executable; {INSTALL_HINT}")
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RegistryBinaryMissing(INSTALL_HINT)


def _free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the registry start is retried if it got taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value))


def to_yaml(data: Mapping[str, Any], indent: int = 0) -> str:
    """Render nested dicts / lists / scalars as block YAML (the small subset a registry config needs)."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            if value:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {{}}")
        elif isinstance(value, (list, tuple)):
            if not value:
                lines.append(f"{pad}{key}: []")
            elif all(not isinstance(v, (Mapping, list, tuple)) for v in value):
                lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
            else:
                lines.append(f"{pad}{key}:")
                for item in value:
                    if isinstance(item, Mapping):
                        body = to_yaml(item, indent + 2).lstrip()
                        lines.append(f"{pad}  - {body}")
                    else:
                        lines.append(f"{pad}  - {_yaml_scalar(item)}")
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    return "\n".join(lines)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base`` (mappings merge, anything else replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _write_htpasswd(path: Path, user: str, password: str) -> None:
    import bcrypt  # lazily: only auth sandboxes need it

    if ":" in user:
        raise ValueError("an htpasswd user name cannot contain ':'")
    # Cost 5 (Go's bcrypt accepts >= 4): the registry checks the hash on *every* request, and this is a
    # throw-away loopback sandbox, so a fast hash keeps it responsive.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o600)


def _write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """Generate a CA and a server certificate for 127.0.0.1 / localhost; return (ca, cert, key) paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regexplore sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def _shutdown(proc: subprocess.Popen[bytes] | None, log: Any, tmp: str | None) -> None:
    """Terminate, wait, kill; close the log; remove the temp folder. Safe to call twice."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT)
    if log is not None and not log.closed:
        log.close()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


class LocalRegistry:
    """A real registry (CNCF distribution) on ``127.0.0.1:<free port>`` with temporary storage.

    Parameters
    ----------
    seed:
        ``False`` (empty), ``True`` / ``"demo"`` (:func:`regexplore.sandbox.seed.demo_content`), ``"test-scale"``
        (:func:`regexplore.sandbox.seed.scale_content`) or a :class:`regexplore.sandbox.seed.Content`; pushed after
        start.
    auth:
        ``("user", "password")`` turns on the registry's htpasswd (HTTP Basic) auth.
    tls:
        ``True`` serves https with a freshly generated CA (``ca_file``) and server certificate.
    token:
        ``dict(realm=..., service=..., issuer=..., rootcertbundle=PATH)`` → the registry's ``auth.token``
        config (a token server elsewhere signs JWTs that this registry verifies). Exclusive with ``auth``.
    port:
        a fixed port; default: a free one.
    storage:
        a folder to keep the registry's data in (kept at stop); default: inside the temporary folder (removed).
    delete:
        enable ``storage.delete`` (manifest / blob DELETE).
    extra_config:
        nested dict deep-merged into the generated config, e.g. ``{"catalog": {"maxentries": 50}}``.
    seed_via:
        how seeding uploads: ``"regexplore"`` (regexplore's own v2 client) or ``"skopeo"``.

    Attributes: ``url``, ``host``, ``port``, ``storage``, ``ca_file``, ``credentials``, ``log_path``,
    ``config_path``, ``seeded`` (the pushed :class:`~regexplore.sandbox.seed.Content` or None).

    Raises ``RegistryBinaryMissing`` (at construction) when the binary is not installed, and ``RuntimeError``
    from ``start()`` when the registry does not come up (the message ends with its log's tail).
    """

    def __init__(
        self,
        seed: bool | str | Any = False,
        auth: tuple[str, str] | None = None,
        tls: bool = False,
        *,
        token: Mapping[str, Any] | None = None,
        port: int | None = None,
        storage: str | os.PathLike[str] | None = None,
        delete: bool = True,
        extra_config: Mapping[str, Any] | None = None,
        seed_via: Literal["regexplore", "skopeo"] = "regexplore",
    ) -> None:
        if auth is not None and token is not None:
            raise ValueError("choose htpasswd auth or token auth, not both")
        if auth is not None and (len(auth) != 2 or not all(isinstance(x, str) for x in auth)):
            raise ValueError("auth must be a (user, password) tuple of strings")
        if token is not None:
            missing = {"realm", "service", "issuer", "rootcertbundle"} - set(token)
            if missing:
                raise ValueError(f"token config lacks {sorted(missing)}")
        self.binary = find_registry_binary()
        self._seed = seed
        self._seed_via = seed_via
        self._auth = tuple(auth) if auth else None
        self.tls = bool(tls)
        self._token = dict(token) if token else None
        self._fixed_port = port
        self._fixed_storage = Path(storage) if storage is not None else None
        self.delete = delete
        self.extra_config = dict(extra_config or {})

        self.port: int | None = None
        self.storage: Path | None = None
        self.ca_file: str | None = None
        self.log_path: Path | None = None
        self.config_path: Path | None = None
        self.seeded: Any = None
        self._tmp: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._finalizer: weakref.finalize | None = None

    # -- public attributes ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` (raises ``RuntimeError`` before ``start()``)."""
        if self.port is None:
            raise RuntimeError("the registry is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` or ``https://…`` (raises ``RuntimeError`` before ``start()``)."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The ``(user, password)`` for htpasswd auth, or None. Never shown by ``repr``."""
        return self._auth  # type: ignore[return-value]

    @property
    def running(self) -> bool:
        """True while the registry process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        auth = "htpasswd" if self._auth else ("token" if self._token else "none")
        state = "running" if self.running else "stopped"
        return f"<LocalRegistry {where} auth={auth} tls={self.tls} {state}>"

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> LocalRegistry:
        """Start the registry, wait until ``/v2/`` answers, then seed it if asked. Returns ``self``.

        Raises ``RuntimeError`` if it is already running or does not come up within 20 s.
        """
        if self.running:
            raise RuntimeError("the registry is already running")
        self._tmp = tempfile.mkdtemp(prefix="regexplore-registry-")
        self._finalizer = weakref.finalize(self, _shutdown, None, None, self._tmp)
        try:
            tmp = Path(self._tmp)
            self.storage = self._fixed_storage or tmp / "storage"
            self.storage.mkdir(parents=True, exist_ok=True)
            self.log_path = tmp / "registry.log"
            self.config_path = tmp / "config.yml"
            tls_files = None
            if self.tls:
                ca, cert, key = _write_tls_files(tmp)
                self.ca_file = str(ca)
                tls_files = (cert, key)
            if self._auth:
                _write_htpasswd(tmp / "htpasswd", *self._auth)
            attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
            for attempt in range(attempts):
                self.port = self._fixed_port or _free_port()
                self.config_path.write_text(to_yaml(self._config(tmp, tls_files)) + "\n")
                if self._launch():
                    break
                if attempt == attempts - 1 or "address already in use" not in self._log_tail():
                    raise RuntimeError(f"the registry did not start; its log ends with:\n{self._log_tail()}")
            if self._seed is not False and self._seed is not None:
                self._push_seed()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the registry (SIGTERM, wait, SIGKILL) and remove the temporary folder. Idempotent."""
        proc, log, tmp = self._proc, self._log, self._tmp
        self._proc = self._log = self._tmp = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _shutdown(proc, log, tmp)

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, **kw: Any) -> Any:
        """A ``regexplore.Registry`` for this sandbox (its credentials and CA filled in); ``kw`` passes on."""
        from .. import Registry

        return Registry(self.url, auth=self.credentials, ca_bundle=self.ca_file, **kw)

    # -- internals -----------------------------------------------------------------------------------
    def _config(self, tmp: Path, tls_files: tuple[Path, Path] | None) -> dict[str, Any]:
        http: dict[str, Any] = {
            "addr": f"127.0.0.1:{self.port}",
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if tls_files:
            http["tls"] = {"certificate": str(tls_files[0]), "key": str(tls_files[1])}
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": bool(self.delete)},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
            "catalog": {"maxentries": 1000},
        }
        if self._auth:
            config["auth"] = {"htpasswd": {"realm": "regexplore-sandbox", "path": str(tmp / "htpasswd")}}
        elif self._token:
            config["auth"] = {"token": self._token}
        return _merge(config, self.extra_config)

    def _launch(self) -> bool:
        """Start the process and wait for ``/v2/``; False if it exited early (e.g. port taken)."""
        assert self.log_path is not None and self._tmp is not None
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")
        # The registry also reads REGISTRY_* variables as config overrides: do not inherit any.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._proc = subprocess.Popen(
            [self.binary, "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            cwd=self._tmp, start_new_session=True,
        )
        assert self._finalizer is not None
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._log, self._tmp)
        deadline = time.monotonic() + _START_TIMEOUT
        context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context):
                    return True
            except urllib.error.HTTPError:
                return True  # 401 from an auth sandbox: it answers
            except ssl.SSLError:
                return True  # it speaks TLS and wants something more (e.g. a client certificate)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        _shutdown(self._proc, None, None)
        raise RuntimeError(f"the registry did not answer within {_START_TIMEOUT:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _push_seed(self) -> None:
        from . import seed as seed_mod

        content = seed_mod.resolve_content(self._seed)
        if self._seed_via == "skopeo":
            seed_mod.push_with_skopeo(content, self)
        else:
            seed_mod.push(content, self.client())
        self.seeded = content
