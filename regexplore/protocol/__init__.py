"""The registry protocols over :mod:`regexplore.http`: OCI Distribution / Registry v2, Docker Hub's own
endpoints, and the legacy v1 + Index API. Bytes and dicts in, bytes and dicts out."""
