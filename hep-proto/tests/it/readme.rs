//! The crate README stays in step with the code (its examples run as doctests).

use hep_proto::DecodeError;

/// The error table names every metrics label `DecodeError::label` can return.
#[test]
fn readme_lists_every_error_label() {
    let readme = include_str!("../../README.md");
    for label in DecodeError::LABELS {
        assert!(
            readme.contains(&format!("| `{label}` |")),
            "README lacks {label}"
        );
    }
}
