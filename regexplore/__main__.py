"""Command line: ``python -m regexplore demo`` (or the ``regexplore`` console script).

``demo`` starts a real registry on loopback seeded with regexplore's demo content, prints what is in it
(catalog, the tags of one repository, an image history), then opens JupyterLab on ``notebooks/01-tour.ipynb``
with ``REGEXPLORE_REGISTRY`` pointing at it (``--no-lab``: just keep the registry running until Ctrl-C).
``--headless`` prints, executes the notebooks against the registry into HTML (``--output``, default
``demo-output/``) and exits.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Sequence

DEFAULT_TAGS_REPO = "demo/busybox"
DEFAULT_HISTORY_REF = "library/webapp:latest"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regexplore",
        description="Explore container registries (OCI Distribution / Docker Registry v2) as tables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a seeded local registry and show what is in it",
        description="Start the real registry binary (docker-registry) on 127.0.0.1 with regexplore's "
        "deterministic demo content, print its catalog, the tags of one repository and an image history, "
        "then keep it running until Ctrl-C so a notebook can use the printed URL.",
    )
    demo.add_argument("--headless", action="store_true",
                      help="print the tables, execute the notebooks to HTML (see --output) and exit")
    demo.add_argument("--output", default="demo-output",
                      help="where --headless writes the executed notebooks as HTML (demo-output)")
    demo.add_argument("--no-lab", action="store_true",
                      help="do not open JupyterLab: keep the registry running until Ctrl-C")
    demo.add_argument("--no-browser", action="store_true", help="start JupyterLab without opening a browser")
    demo.add_argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
    demo.add_argument("--content", choices=("demo", "test-scale"), default="demo",
                      help="what to seed: the demo repositories (default) or the large pagination set")
    demo.add_argument("--repo", default=DEFAULT_TAGS_REPO, help=f"repository whose tags to show ({DEFAULT_TAGS_REPO})")
    demo.add_argument("--history", default=DEFAULT_HISTORY_REF,
                      help=f"image whose history to show ({DEFAULT_HISTORY_REF})")
    return parser


# C0/C1 controls, DEL, and the bidirectional marks and overrides that reorder what a terminal shows
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _printable(value: object) -> object:
    r"""A string with its control characters as ``\xNN`` / ``\uNNNN`` (a name or a history line must not
    move the terminal's cursor, retitle its window or reorder the text); other values as they are."""
    if not isinstance(value, str):
        return value
    return _CONTROLS.sub(lambda m: ascii(m[0])[1:-1], value)


def _table(frame: object, columns: Sequence[str] | None = None) -> str:
    """A DataFrame as plain text (only ``columns`` that exist, when given), control characters escaped."""
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]  # type: ignore[index,attr-defined]
    frame = frame.map(_printable)  # type: ignore[attr-defined]
    return frame.to_string(index=False, max_colwidth=60)  # type: ignore[attr-defined]


def _show(sandbox: object, args: argparse.Namespace) -> None:
    import pandas as pd  # noqa: F401  (the facade's tables are DataFrames)

    reg = sandbox.client()  # type: ignore[attr-defined]
    print("Catalog:")
    print(_table(reg.catalog()))
    if args.content == "demo":
        print(f"\nTags of {args.repo}:")
        print(_table(reg.tags(args.repo, details=True),
                     ["tag", "digest", "media_type", "size", "created", "platforms"]))
        print(f"\nHistory of {args.history}:")
        print(_table(reg.history(args.history)))


def _notebooks(sandbox: object, args: argparse.Namespace) -> int | None:
    """Headless: execute the notebooks to HTML and return 0. Otherwise run JupyterLab on the tour and
    return its status, or None (``--no-lab``, no notebooks, JupyterLab missing): keep serving. Whenever
    the notebooks are not run, one line says why."""
    from .jupyter.demo import NO_NOTEBOOKS, TOUR, export_notebooks, notebooks_dir, run_lab

    url = sandbox.url  # type: ignore[attr-defined]
    folder = notebooks_dir()
    if args.content != "demo":
        print(f"\nThe notebooks show the demo content; not running them on --content {args.content}.")
        return 0 if args.headless else None
    if folder is None:
        print(f"\n{NO_NOTEBOOKS}; " + ("nothing to execute." if args.headless else "serving the registry only."),
              file=sys.stderr if args.headless else sys.stdout, flush=True)
        return 1 if args.headless else None
    if args.headless:
        print(f"\nExecuting the notebooks of {folder} against {url} into {args.output}/ …", flush=True)
        export_notebooks(url, args.output, folder)
        return 0
    if args.no_lab:
        return None
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        print("JupyterLab is not installed (pip install 'regexplore[notebook]'); serving the registry only.")
        return None
    print(f"\nOpening JupyterLab on {folder / TOUR} (REGEXPLORE_REGISTRY={url}); "
          "Ctrl-C stops both.", flush=True)
    return run_lab(url, folder, open_browser=not args.no_browser)


def demo(args: argparse.Namespace) -> int:
    """Run the ``demo`` command; returns the exit status."""
    from .sandbox.local import LocalRegistry, RegistryBinaryMissing

    print("Starting a local registry and pushing the demo content…", flush=True)
    try:
        sandbox = LocalRegistry(seed=args.content, port=args.port)
    except RegistryBinaryMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with sandbox:
        print(f"Registry running at {sandbox.url}\n")
        _show(sandbox, args)
        status = _notebooks(sandbox, args)
        if status is not None:
            return status
        # Ctrl-C and SIGTERM only set an event: installing the handlers before the
        # prompt means a signal that arrives at any moment afterwards stops cleanly.
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            print(f"\nThe registry keeps running at {sandbox.url} — in a notebook:\n"
                  f"    import regexplore as rx\n    reg = rx.Registry({sandbox.url!r})\n"
                  f"Press Ctrl-C to stop it.", flush=True)
            while not stop.wait(1.0):
                if not sandbox.running:
                    print(f"error: the registry exited; see {sandbox.log_path}", file=sys.stderr)
                    return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        print("\nStopping the registry.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m regexplore`` and the ``regexplore`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
