//! Policy tooling for the command line: policy tests ([`cases`], `zambda-guard
//! test`), the impact of a policy change ([`diff`], `zambda-guard diff`) and
//! what `zambda-guard check` reports ([`report`]).
//!
//! Both answer from the code that decides live requests: a test case is
//! decided by [`crate::policy::Set::decide`], and a diff compares the
//! compiled slots that `decide` reads ([`crate::policy::Set::coverage`]).
//! Nothing here prints or exits; `main.rs` does.

pub mod cases;
pub mod diff;
pub mod report;

use std::path::{Component, Path, PathBuf};

/// `path` without `.` components, so that `policies/./roles.yaml` reads
/// `policies/roles.yaml` in messages (`..` is kept: symlinks make it
/// unsafe to fold).
fn tidy(path: &Path) -> PathBuf {
    let tidy: PathBuf = path
        .components()
        .filter(|component| *component != Component::CurDir)
        .collect();
    if tidy.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        tidy
    }
}
