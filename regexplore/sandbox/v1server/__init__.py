"""``LocalV1Registry``: a legacy Docker v1 Index + Registry on loopback, in-process (stdlib only).

The package: :mod:`.images` (``V1Image``, the seed), :mod:`.store` (what is served and how: options, images,
repositories, tokens), :mod:`.wire` (HTTP plumbing: bodies, replies, the redacted request log),
:mod:`.handler` (the routes of both roles, after the Python ``docker-registry``) and :mod:`.server`
(``LocalV1Registry``: the sockets and threads).

No public v1 registry survives, so this module is how a notebook shows "the same kind of image
through the v1 protocol" and how the test suite checks :mod:`regexplore.protocol.v1.client`. It is a **teaching
and test server, not for production**: everything lives in memory and is gone at ``stop()``;
passwords are kept in plain text; tokens are random strings, not signed; there is no TLS, no
rate limit, no storage driver and no mirror mode; it binds 127.0.0.1 by default.

What it does is faithful, as far as those sources go: behaviour follows the 2014 Docker docs
(``registry_api.md``, ``hub_registry_spec.md``, ``docker-io_api.md``), the Python
``docker-registry`` server (``docker_registry/{app,images,tags,index,search,toolkit}.py``,
``lib/checksums.py``) and what Docker 1.3's ``registry/session.go`` expects. See
``/work/shared/docs/protocol.md`` section 1. Every body and header shape below is one of those
sources'; nothing is a convenience of this server. Where the sources disagree a knob picks
(``tags_form``, ``token_prefix``, ``standalone_header``, ``odd_whitespace``, ``checksum_header``,
``content_range``).

Two roles:

* **index** (own port unless ``standalone``): ``/v1/_ping``, ``/v1/search``, ``GET /v1/users``
  (login check), ``GET|PUT /v1/repositories/<name>/images``, ``PUT|DELETE /v1/repositories/<name>/``.
  Basic auth; tokens (``X-Docker-Token``) are issued only when the request carries
  ``X-Docker-Token: true``; ``X-Docker-Endpoints`` lists the registry.
* **registry**: ``/v1/_ping``, ``/v1/images/<id>/{json,layer,ancestry,checksum}``,
  ``/v1/repositories/<name>/tags[/<tag>]``, ``DELETE /v1/repositories/<name>/``. Token auth:
  a token is valid for its repository and access (read: GET, write: PUT/POST, delete: DELETE),
  single use by default (the index "invalidates the token" once the registry checked it); the
  registry then grants a session cookie that authorises later requests.

``standalone=True`` emulates the Python registry with ``standalone: true``: one port serves both
roles, tokens carry the ``Token `` prefix (the Python ``generate_headers`` quirk) and are not
checked; with ``users`` set, every request needs valid Basic auth (as with nginx + htpasswd in
front of it).

``seed=True`` preloads ``demo/busybox``: three images built with :meth:`V1Image.build` (a base
"rootfs", a ``#(nop) CMD`` step whose layer is an empty tar, an app step), tags ``1.0`` (the
middle image) and ``latest`` (the top one); the same bytes and ids on every run (see
:func:`seed_content`).

Every request is logged in :attr:`LocalV1Registry.requests` with credentials redacted (what the
client sent, what the server answered: tokens, endpoints, cookies) — the headers a client's own
trace does not keep.

Example
-------
>>> with LocalV1Registry(seed=True, users={"demo": "pw"}) as srv:     # doctest: +SKIP
...     reg = srv.client()                        # rx.Registry(srv.url, api="v1", auth=...)
...     reg.history("demo/busybox:latest")

Building content by hand (``V1Server`` is the same class, the name the test suite uses):

>>> with LocalV1Registry(users={"alice": "pw"}) as srv:              # doctest: +SKIP
...     base = V1Image.build(files={"etc/hello": b"hi\\n"})
...     top = V1Image.build(parent=base, files={"bin/run": b"#!/bin/sh\\n"})
...     srv.preload("alice/app", [base, top], tags={"latest": top.id})
...     srv.index_url, srv.registry_url
"""

from .images import SEED_REPOSITORY, V1Image, seed_content
from .server import LocalV1Registry, V1Server

__all__ = ["SEED_REPOSITORY", "LocalV1Registry", "V1Image", "V1Server", "seed_content"]
