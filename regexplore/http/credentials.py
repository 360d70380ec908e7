"""Where credentials come from: explicit values, the Docker config file, credential helpers.

Where credentials come from (:func:`resolve_credentials`): ``auth=(user, password)``;
``auth="<registry token>"`` (sent as ``Bearer`` as is); a :class:`Credentials`; else the Docker
config file (``DOCKER_CONFIG`` or ``~/.docker/config.json``: ``credHelpers``, then ``credsStore``,
then ``auths`` with ``auth`` / ``identitytoken`` / ``registrytoken``; Docker Hub's key is
``https://index.docker.io/v1/``); else anonymous. :attr:`Credentials.source` says which; no secret
ever appears in a repr, a log record, the trace or an exception; the values we hold are
:class:`~regexplore.http.redact.Secret` strings, so a traceback's locals show ``'<redacted>'``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .. import _env
from ..errors import RegistryError
from .redact import Scrubber, Secret

__all__ = ["Credentials", "docker_config_path", "resolve_credentials"]

log = logging.getLogger("regexplore.http.credentials")

_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com"}


class Credentials:
    """A secret and where it came from. ``kind`` is one of

    - ``"password"``: username + password (Basic, or the token server's Basic / password grant);
    - ``"identitytoken"``: an OAuth2 refresh token (``docker login`` to ACR & co. stores one);
    - ``"token"``: a registry bearer token sent as is on every request.

    ``repr``/``str`` show the kind, the source and the username, never the secret.
    """

    __slots__ = ("_secret", "kind", "source", "username")

    def __init__(self, username: str | None, secret: str | None, *, kind: str = "password",
                 source: str = "explicit") -> None:
        if kind not in ("password", "identitytoken", "token"):
            raise ValueError(f"unknown credential kind {kind!r}")
        self.username = username
        self._secret = Secret(secret) if secret is not None else None
        self.kind = kind
        self.source = source

    @property
    def secret(self) -> str | None:
        """The secret, as a :class:`~regexplore.http.redact.Secret` (its repr is ``'<redacted>'``)."""
        return self._secret

    def basic_header(self) -> str:
        """``Basic base64(user:secret)`` (an identity token goes with user ``<token>`` if none)."""
        user = self.username or ("<token>" if self.kind == "identitytoken" else "")
        return Secret("Basic " + base64.b64encode(f"{user}:{self._secret or ''}".encode()).decode())

    def held_by(self, scrubber: Scrubber) -> None:
        """Have ``scrubber`` cut the secret out of server text, alone and as the ``user:secret``
        pair that :meth:`basic_header` encodes."""
        user = self.username or ("<token>" if self.kind == "identitytoken" else "")
        scrubber.hold("credentials", self._secret, f"{user}:{self._secret}" if self._secret else None)

    def describe(self) -> str:
        """``"password for alice from docker config /…/config.json"`` — safe to show."""
        who = f" for {self.username}" if self.username and self.username != "<token>" else ""
        return f"{self.kind}{who} from {self.source}"

    def __repr__(self) -> str:
        who = f" user={self.username!r}" if self.username else ""
        return f"<Credentials {self.kind} from {self.source}{who}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling a secret into a notebook checkpoint by accident
        raise TypeError("Credentials cannot be pickled")


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = _env.text("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _norm_host(key: str) -> str:
    """A Docker config key (``https://index.docker.io/v1/``, ``host:5000``…) → lowercase host[:port]."""
    k = key.strip().lower()
    if "://" in k:
        k = k.split("://", 1)[1]
    k = k.split("/", 1)[0]
    return "index.docker.io" if k in _HUB_HOSTS else k


_CONFIG_SECRET_KEYS = {"auth", "password", "identitytoken", "registrytoken", "Secret"}


def _hide_secrets(obj: dict[str, Any]) -> dict[str, Any]:
    """``json.loads`` object hook: credential values of a Docker config or a credential helper's
    answer become :class:`Secret`, so a traceback's locals (``doc``, ``entry``) show ``'<redacted>'``."""
    return {k: Secret(v) if k in _CONFIG_SECRET_KEYS and isinstance(v, str) else v for k, v in obj.items()}


def _run_helper(path: str, server: str) -> tuple[int, Secret, bool]:
    """``<path> get`` with ``server`` on stdin: (exit status, stdout as a :class:`Secret`, whether it
    said "credentials not found"). Its output stays out of every frame that may raise."""
    proc = subprocess.run([path, "get"], input=server.encode(), capture_output=True, timeout=30, check=False)
    not_found = b"credentials not found" in proc.stdout.lower() + proc.stderr.lower()
    return proc.returncode, Secret(proc.stdout.decode("utf-8", "replace")), not_found


def _helper_answer(out: str) -> dict[str, Any] | None:
    """A credential helper's JSON object with its ``Secret`` hidden; None if it is not one."""
    try:
        doc = json.loads(out, object_hook=_hide_secrets)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _helper_get(helper: str, server: str) -> Credentials | None:
    """Run ``docker-credential-<helper> get`` with ``server`` on stdin; None if it has nothing.

    Raises ``RegistryError`` if the helper is configured but missing or fails unexpectedly
    (its output is not echoed: it may hold a secret).
    """
    exe = f"docker-credential-{helper}"
    path = shutil.which(exe)
    if path is None:
        raise RegistryError(f"the Docker config names credential helper {helper!r}, but {exe} is not on PATH")
    try:
        status, out, not_found = _run_helper(path, server)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {exe} did not answer within 30 s") from None
    if status != 0:
        if not_found:
            return None
        raise RegistryError(f"credential helper {exe} failed (exit status {status})")
    doc = _helper_answer(out)
    if doc is None:
        raise RegistryError(f"credential helper {exe} answered something that is not a JSON object")
    user, secret = doc.get("Username"), doc.get("Secret")
    if not secret:
        return None
    source = f"credential helper {helper}"
    if user == "<token>":
        return Credentials(None, secret, kind="identitytoken", source=source)
    return Credentials(user, secret, source=source)


def _from_docker_config(host: str) -> Credentials | None:
    """Credentials for ``host`` from the Docker config file, in Docker's order: ``credHelpers``,
    ``credsStore``, then ``auths``. None when the file or an entry is missing."""
    path = docker_config_path()
    try:
        doc = json.loads(path.read_text(), object_hook=_hide_secrets)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable Docker config %s (%s)", path, type(exc).__name__)
        return None
    if not isinstance(doc, dict):
        return None
    want = _norm_host(host)
    hub = want == "index.docker.io"
    helpers = doc.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _norm_host(key) == want:
            return _helper_get(helper, _HUB_CONFIG_KEY if hub else key)
    auths = doc.get("auths") or {}
    if doc.get("credsStore"):
        found = _helper_get(doc["credsStore"], _HUB_CONFIG_KEY if hub else host)
        if found:
            return found
    keys = sorted((k for k in auths if _norm_host(k) == want), key=lambda k: k != (_HUB_CONFIG_KEY if hub else host))
    for key in keys:
        entry = auths[key]
        if not isinstance(entry, dict):
            continue
        source = f"docker config {path}"
        user = entry.get("username")
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                pw = Secret(pw)
            except (binascii.Error, ValueError, UnicodeDecodeError):
                log.warning("ignoring a malformed 'auth' value for %s in %s", key, path)
                continue
        else:
            pw = entry.get("password") or ""
        if entry.get("identitytoken"):
            return Credentials(user or None, entry["identitytoken"], kind="identitytoken", source=source)
        if entry.get("registrytoken"):
            return Credentials(user or None, entry["registrytoken"], kind="token", source=source)
        if user and pw:
            return Credentials(user, pw, source=source)
    return None


def resolve_credentials(host: str, auth: Any) -> Credentials | None:
    """Credentials for ``host`` (``host[:port]``).

    ``auth`` may be ``(user, password)``, a registry token string, a :class:`Credentials`,
    ``False`` (anonymous, do not read the Docker config) or None (the Docker config, else
    anonymous). Returns None for anonymous. Raises ``RegistryError`` if a configured credential
    helper is missing or fails, ``TypeError`` for an unsupported ``auth``.
    """
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        return Credentials(str(auth[0]), str(auth[1]), source="explicit")
    if isinstance(auth, str):
        return Credentials(None, auth, kind="token", source="explicit")
    if auth is False:
        return None
    if auth is None:
        return _from_docker_config(host)
    raise TypeError("auth must be (user, password), a token string, Credentials, False or None")
