//! A Debian `docker-registry` on 127.0.0.1 for tests (filled in by the registry work).
