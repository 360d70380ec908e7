"""Text a hostile or old registry sends that is not valid Unicode: JSON strings holding lone surrogates
(``"\\udc80"``) must never break a frame, also when pandas' string columns are pyarrow-backed."""

from __future__ import annotations

import pyarrow  # noqa: F401  (pandas backs its string columns with pyarrow when it is installed)
from digests import sha256_digest
from pushing import push_image

import regexplore as rx


def _push(base: str, repo: str, tag: str, config: bytes) -> None:
    """Push a one-layer OCI image (an empty tar) whose config is ``config`` as given."""
    push_image(base, repo, tag, [(b"\0" * 1024, "application/vnd.oci.image.layer.v1.tar")], config=config)


def test_lone_surrogates_in_a_config_are_escaped_in_every_frame(empty_sandbox) -> None:
    # written by hand: json.dumps would refuse nothing, but a real config could carry any escape
    config = (b'{"architecture":"amd64","os":"linux\\udc80","created":"2024-01-01T00:00:00Z",'
              b'"rootfs":{"type":"layers","diff_ids":["' + sha256_digest(b"\0" * 1024).encode() + b'"]},'
              b'"history":[{"created_by":"RUN echo caf\\udce9 \\ud800","comment":"x\\udfff"}]}')
    _push(empty_sandbox.url, "odd/text", "v1", config)
    reg = rx.Registry(empty_sandbox.url)
    hist = reg.history("odd/text:v1")
    assert hist["created_by"].tolist() == ["RUN echo caf\\udce9 \\ud800"]
    assert hist["comment"].tolist() == ["x\\udfff"]
    details = reg.tags("odd/text", details=True)
    assert details["os"].tolist() == ["linux\\udc80"]
    # the frame round-trips through pyarrow (what Parquet and pandas' pyarrow strings need)
    assert pyarrow.Table.from_pandas(hist).num_rows == 1
