//! The directory walk: which files under the policy directory are policy
//! files, in which order they are merged, and reading them as UTF-8 text.
//! Hidden names are skipped, symlinks followed, and each real file and
//! directory visited once, so a Kubernetes ConfigMap volume yields every
//! file exactly once and symlink loops end.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::load::{LoadError, Warning};

/// Whether a file name is a policy file (not a policy test).
fn is_policy_file(name: &[u8]) -> bool {
    let policy = [b".yaml".as_slice(), b".yml", b".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let test = [b".test.yaml".as_slice(), b".test.yml", b".test.json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    policy && !test
}

/// The policy files under `dir`: recursively, entries sorted by name at each
/// level, names starting with `.` skipped, symlinks followed, each real
/// directory and file visited once (which also ends symlink loops).
pub(super) fn walk(
    dir: &Path,
    errors: &mut Vec<LoadError>,
    warnings: &mut Vec<Warning>,
) -> Vec<PathBuf> {
    let fail = |errors: &mut Vec<LoadError>, message: String| {
        errors.push(LoadError {
            file: dir.to_path_buf(),
            entry: None,
            line: None,
            message,
        });
    };
    let canonical = match fs::metadata(dir).and_then(|meta| {
        if meta.is_dir() {
            fs::canonicalize(dir)
        } else {
            Err(io::Error::other("not a directory"))
        }
    }) {
        Ok(canonical) => canonical,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fail(errors, "policy directory does not exist".to_owned());
            return Vec::new();
        }
        Err(error) => {
            fail(errors, format!("cannot read policy directory: {error}"));
            return Vec::new();
        }
    };
    let mut walk = Walk {
        seen_dirs: HashSet::from([canonical]),
        seen_files: HashSet::new(),
        files: Vec::new(),
        errors,
        warnings,
    };
    walk.dir(dir);
    walk.files
}

/// State of one directory walk.
struct Walk<'a> {
    /// Real paths of the directories entered and files taken.
    seen_dirs: HashSet<PathBuf>,
    seen_files: HashSet<PathBuf>,
    files: Vec<PathBuf>,
    errors: &'a mut Vec<LoadError>,
    warnings: &'a mut Vec<Warning>,
}

impl Walk<'_> {
    fn fail(&mut self, path: &Path, message: String) {
        self.errors.push(LoadError {
            file: path.to_path_buf(),
            entry: None,
            line: None,
            message,
        });
    }

    /// Visits `dir`'s entries in name order, depth first.
    fn dir(&mut self, dir: &Path) {
        let mut entries = Vec::new();
        match fs::read_dir(dir) {
            Ok(listing) => {
                for entry in listing {
                    match entry {
                        Ok(entry) => {
                            let name = entry.file_name().as_encoded_bytes().to_vec();
                            entries.push((name, entry.path()));
                        }
                        Err(error) => self.fail(dir, format!("cannot list directory: {error}")),
                    }
                }
            }
            Err(error) => self.fail(dir, format!("cannot list directory: {error}")),
        }
        entries.sort();
        for (name, path) in entries {
            // Hidden entries, including Kubernetes' `..data` and its
            // timestamped targets, are only reached through symlinks.
            if !name.starts_with(b".") {
                self.entry(&name, &path);
            }
        }
    }

    fn entry(&mut self, name: &[u8], path: &Path) {
        // `metadata` follows symlinks: a link is what it points to.
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) => return self.fail(path, format!("cannot read: {error}")),
        };
        if !meta.is_dir() && !is_policy_file(name) {
            return;
        }
        if !meta.is_dir() && !meta.is_file() {
            self.warnings.push(Warning {
                file: path.to_path_buf(),
                entry: None,
                line: None,
                message: "not a regular file; skipped".to_owned(),
            });
            return;
        }
        let real = match fs::canonicalize(path) {
            Ok(real) => real,
            Err(error) => return self.fail(path, format!("cannot read: {error}")),
        };
        if meta.is_dir() {
            // A directory seen before is skipped, which also ends loops.
            if self.seen_dirs.insert(real) {
                self.dir(path);
            }
        } else if self.seen_files.insert(real) {
            self.files.push(path.to_path_buf());
        }
    }
}

pub(super) fn read(path: &Path) -> Result<String, LoadError> {
    let error = |message: String| LoadError {
        file: path.to_path_buf(),
        entry: None,
        line: None,
        message,
    };
    let bytes = fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|_| error("not valid UTF-8".to_owned()))
}
