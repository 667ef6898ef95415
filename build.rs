//! Stamps the build for `build_info`: the git revision (`unknown` outside a
//! git checkout) and the compiler's version.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    let revision = std::env::var("ZAMBDA_GUARD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(String::from))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ZAMBDA_GUARD_REVISION={revision}");
    println!("cargo:rustc-env=ZAMBDA_GUARD_RUSTC={rustc}");
    println!("cargo:rerun-if-env-changed=ZAMBDA_GUARD_REVISION");
    // A new commit or a checkout moves HEAD (in a worktree, its own HEAD);
    // the branch's ref moves with a commit on it.
    if let Some(head) = output("git", &["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
