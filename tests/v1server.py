"""The v1 Index + Registry the test suite uses: a re-export of :mod:`regexplore.v1sandbox`.

The server moved into the package (``regexplore.v1sandbox.LocalV1Registry``) so that notebooks can
start one too; ``V1Server`` is the same class under the name these tests were written with.
"""

from regexplore.v1sandbox import LocalV1Registry, V1Image, V1Server

__all__ = ["V1Image", "V1Server", "LocalV1Registry"]
