"""Registries to explore without the internet: the real registry binary on loopback (:class:`LocalRegistry`),
an in-process legacy v1 index + registry (:mod:`regexplore.sandbox.v1server`), and the demo content both serve."""

from .local import INSTALL_HINT, LocalRegistry, RegistryBinaryMissing, find_registry_binary

__all__ = ["LocalRegistry", "RegistryBinaryMissing", "find_registry_binary", "INSTALL_HINT"]
