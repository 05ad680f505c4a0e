//! The `[imgbake]` / `imgbake:` extension, shared by both config formats.
