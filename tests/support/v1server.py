"""The v1 Index + Registry the test suite uses: a re-export of :mod:`regexplore.sandbox.v1server`.

The server moved into the package (``regexplore.sandbox.v1server.LocalV1Registry``) so that notebooks can
start one too; ``V1Server`` is the same class under the name these tests were written with.
"""

from regexplore.sandbox.v1server import LocalV1Registry, V1Image, V1Server

__all__ = ["LocalV1Registry", "V1Image", "V1Server"]
