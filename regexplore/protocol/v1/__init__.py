"""The legacy Docker Registry v1 + Index API (Docker 1.3's session) and tarsum, its layer checksum."""
