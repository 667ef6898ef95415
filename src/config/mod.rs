//! `config.yaml`: the file types (serde, unknown keys rejected) and their
//! translation into one validated [`Config`].
//!
//! Three jobs, three files: `file` holds the serde types as the file is
//! written, `model` the validated types the rest of the program holds,
//! and `validate` the translation from one to the other. After
//! [`Config::load`] nothing is "maybe invalid": socket addresses are
//! already resolved, durations are [`std::time::Duration`], HMAC secrets
//! have been read from the environment, paths are absolute relative to the
//! config file. Every problem found is reported, not just the first, each
//! naming the key it is about. This module imports only leaf modules
//! (`pem`, `route`), since nearly every other module imports it.

use std::path::{Path, PathBuf};

mod file;
mod model;
mod oystehr;
mod validate;

pub use model::*;
pub use oystehr::Oystehr;
pub use validate::{is_hmac, parse_algorithm};

/// Every problem found in a config file, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct Error {
    pub problems: Vec<String>,
}

impl Error {
    fn one(message: impl Into<String>) -> Self {
        Error {
            problems: vec![message.into()],
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::one(format!("{}: cannot read: {e}", path.display())))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        let name = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::from_yaml(&text, &name.display().to_string(), &base)
    }

    /// Validates config text; relative paths are taken relative to `base`.
    pub fn from_yaml(text: &str, name: &str, base: &Path) -> Result<Config, Error> {
        let file: file::File = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            Error::one(format!("{name}{at}: {e}"))
        })?;
        validate::validate(file, name, base)
    }
}

#[cfg(test)]
mod tests;
