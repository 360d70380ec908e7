"""Content: verified, resumable blob fetches and the cache, OCI layouts, push, and layer tars
(streamed listing, merge, diff, read_file, safe extraction)."""
