"""HTTP plumbing: the transport (one request, redirects, auth challenges, retries, the trace), authentication
and where credentials come from. Knows nothing of manifests or layers."""
