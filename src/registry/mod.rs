//! OCI distribution client: pull and push over HTTP(S), streaming blobs.
