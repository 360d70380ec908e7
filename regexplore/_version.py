"""The package version, in a leaf of its own (the transport names it in its User-Agent)."""

__version__ = "0.1.0"
