//! Loader stub, replaced in the next commit.
use super::diagnostics::Diagnostics;
use super::tree::Node;
use crate::spec::Spec;
use std::path::Path;

pub fn load(
    _tree: &Node,
    _project_dir: &Path,
    mut diags: Diagnostics,
) -> (Option<Spec>, Diagnostics) {
    diags.file_error("not available yet");
    (None, diags)
}
