//! skopeo / umoci / runc helpers for tests (filled in by the infra work).
