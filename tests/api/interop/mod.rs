//! Clients nobody here wrote, against a real tollgate: a Flask app that verifies access tokens
//! with PyJWT, and the same app behind a real nginx doing forward-auth. The Python packages come
//! from the Python package registry into `target/pyenv` (scripts/install-test-deps); without
//! them the tests are skipped with a notice, unless `TOLLGATE_REQUIRE_PYTHON=1` (CI), which
//! fails instead.

mod flask;
mod schemathesis;
pub(crate) mod snippets;

use std::path::PathBuf;

/// The virtual environment's Python, or `None` with a notice (a failure when it is required).
pub(crate) fn python() -> Option<PathBuf> {
    let python = std::env::var_os("TOLLGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python")
        });
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("TOLLGATE_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "{} is required here (TOLLGATE_REQUIRE_PYTHON=1) but missing: run scripts/install-test-deps",
        python.display()
    );
    eprintln!(
        "NOTICE: {} missing (scripts/install-test-deps makes it); skipped the Python interop test",
        python.display()
    );
    None
}
