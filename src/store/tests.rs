//! The store: one read per load, reloads only on changed content, the
//! config's checks applied for every user, and no lock that can wedge it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

const ALPHA: &str = "zambdas: [{id: z-1, name: alpha}]\n";
const BETA: &str = "zambdas: [{id: z-2, name: beta}]\n";

fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "auth:\n  issuers:\n    - issuer: https://store.test/\n      audiences: [a]\n      \
         algorithms: [RS256]\n      jwks_url: https://store.test/jwks.json\n\
         policies:\n  dir: {}\n{extra}",
        dir.display()
    );
    Config::from_yaml(&text, "store-test.yaml", Path::new("/tmp")).unwrap()
}

fn names(store: &Store) -> Vec<String> {
    store
        .current()
        .map(|set| set.zambdas().map(|z| z.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn start_then_reload_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, ALPHA).unwrap();
    let config = config(dir.path(), "");
    let metrics = Metrics::new();
    let store = Store::new();
    assert!(!store.is_loaded());
    store.start(&config, &metrics).unwrap();
    assert_eq!(
        (store.generation(), names(&store)),
        (1, vec!["alpha".to_string()])
    );

    // What start loaded is what the next reload compares with.
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Unchanged);
    std::fs::write(&file, BETA).unwrap();
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Installed);
    assert_eq!(
        (store.generation(), names(&store)),
        (2, vec!["beta".to_string()])
    );
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Unchanged);

    std::fs::write(&file, "zambdas: [{id: bad id, name: x}]\n").unwrap();
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Refused);
    assert_eq!(
        (store.generation(), names(&store)),
        (2, vec!["beta".to_string()])
    );
    // Refused content is not retried until it changes again.
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Unchanged);
    assert_eq!(metrics.policy_last_reload_success.get(), 0);
    assert_eq!(metrics.policy_reloads.with_label_values(&["ok"]).get(), 1);
    assert_eq!(
        metrics.policy_reloads.with_label_values(&["error"]).get(),
        1
    );
    assert_eq!(metrics.policy_generation.get(), 2);
}

#[test]
fn a_panicked_load_does_not_wedge_later_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, ALPHA).unwrap();
    let config = config(dir.path(), "");
    let metrics = Metrics::new();
    let store = Store::new();
    store.start(&config, &metrics).unwrap();
    // A load that panicked while holding the lock poisons it.
    let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _held = store.last.lock();
        panic!("a load went wrong");
    }));
    assert!(poisoned.is_err() && store.last.is_poisoned());
    std::fs::write(&file, BETA).unwrap();
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Installed);
    assert_eq!(names(&store), vec!["beta".to_string()]);
}

#[test]
fn every_user_gets_the_checks_that_need_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("catalog.yaml"),
        "zambdas:\n  - id: z-1\n    name: alpha\n    upstream: labs\n",
    )
    .unwrap();
    let without = config(dir.path(), "");
    let errors = load(&without).unwrap_err().to_string();
    assert!(
        errors.contains("catalog.yaml:2") && errors.contains("\"labs\""),
        "{errors}"
    );
    assert!(Store::new().start(&without, &Metrics::new()).is_err());
    // Without a config only the files' own rules apply.
    assert!(load_dir(dir.path(), None).is_ok());

    let with = config(
        dir.path(),
        "upstreams:\n  labs:\n    addresses: [127.0.0.1:1]\n",
    );
    assert!(load(&with).is_ok());
}

#[test]
fn defaults_need_a_configured_issuer_and_id_templates_need_ids() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "zambdas:\n  - name: alpha\nroles:\n  - name: Patient\n    accessPolicy: []\n\
         defaults:\n  - issuer: https://other.test/\n    roles: [Patient]\n",
    )
    .unwrap();
    let errors = load(&config(dir.path(), "")).unwrap_err().to_string();
    assert!(
        errors.contains("\"https://other.test/\" is not configured"),
        "{errors}"
    );

    std::fs::write(
        dir.path().join("p.yaml"),
        "zambdas:\n  - name: alpha\n  - {id: z-2, name: beta}\n",
    )
    .unwrap();
    let by_name = config(dir.path(), "upstream:\n  path_template: /fn/{name}\n");
    assert!(load(&by_name).is_ok());
    let by_id = config(dir.path(), "upstream:\n  path_template: /fn/{id}\n");
    let errors = load(&by_id).unwrap_err().to_string();
    assert!(
        errors.contains("zambda alpha") && errors.contains("uses {id}") && !errors.contains("beta"),
        "{errors}"
    );
}

/// Same-length policy text with a different name (ALPHA vs this).
const GAMMA: &str = "zambdas: [{id: z-3, name: gamma}]\n";

#[test]
fn polls_read_the_files_only_when_their_metadata_moved() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, ALPHA).unwrap();
    let config = config(dir.path(), "");
    let metrics = Metrics::new();
    let store = Store::new();
    store.start(&config, &metrics).unwrap();
    assert_eq!(store.poll(&config, &metrics), None, "nothing moved");

    // Rewritten in place, same length, modification time put back: the
    // metadata did not move, so the poll does not read the file...
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(ALPHA.len(), GAMMA.len());
    let open = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    std::io::Write::write_all(&mut &open, GAMMA.as_bytes()).unwrap();
    open.set_modified(modified).unwrap();
    drop(open);
    assert_eq!(store.poll(&config, &metrics), None);
    assert_eq!(names(&store), ["alpha"]);
    // ...until the periodic full read, which the content decides.
    let later = Instant::now() + FULL_READ_INTERVAL;
    assert_eq!(
        store.poll_at(&config, &metrics, later),
        Some(Reload::Installed)
    );
    assert_eq!(names(&store), ["gamma"]);
    assert_eq!(store.poll(&config, &metrics), None);

    // A touch moves the metadata: read, and found unchanged.
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(store.poll(&config, &metrics), Some(Reload::Unchanged));
    assert_eq!(store.poll(&config, &metrics), None);

    // A new file, and a re-pointed symlink, move it too.
    std::fs::write(dir.path().join("more.yaml"), BETA).unwrap();
    assert_eq!(store.poll(&config, &metrics), Some(Reload::Installed));
    assert_eq!(names(&store), ["gamma", "beta"]);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::os::unix::fs::symlink(&a, dir.path().join("data")).unwrap();
    assert_eq!(store.poll(&config, &metrics), Some(Reload::Unchanged));
    std::fs::remove_file(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&b, dir.path().join("data")).unwrap();
    assert_eq!(store.poll(&config, &metrics), Some(Reload::Unchanged));
    assert_eq!(store.poll(&config, &metrics), None);
}

#[test]
fn several_directories_are_one_set() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    std::fs::write(one.path().join("a.yaml"), ALPHA).unwrap();
    std::fs::write(two.path().join("b.yaml"), BETA).unwrap();
    let text = format!(
        "auth:\n  issuers:\n    - issuer: https://store.test/\n      audiences: [a]\n      \
         algorithms: [RS256]\n      jwks_url: https://store.test/jwks.json\n\
         policies:\n  dir: [{}, {}]\n",
        one.path().display(),
        two.path().display()
    );
    let config = Config::from_yaml(&text, "store-test.yaml", Path::new("/tmp")).unwrap();
    assert_eq!(config.policies.dirs.len(), 2);
    let metrics = Metrics::new();
    let store = Store::new();
    store.start(&config, &metrics).unwrap();
    assert_eq!(names(&store), ["alpha", "beta"]);
    assert_eq!(load(&config).unwrap().set.zambdas().count(), 2);

    // a change in either is a change of the set
    std::fs::write(two.path().join("b.yaml"), GAMMA).unwrap();
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Installed);
    assert_eq!(names(&store), ["alpha", "gamma"]);

    // the same name in two directories is the error it is in two files
    std::fs::write(two.path().join("b.yaml"), ALPHA).unwrap();
    let errors = load(&config).unwrap_err().to_string();
    assert!(errors.contains("alpha"), "{errors}");
    assert_eq!(store.reload(&config, &metrics, "test"), Reload::Refused);

    // an empty list is a config error naming the key
    let empty = text.replace(
        &format!("[{}, {}]", one.path().display(), two.path().display()),
        "[]",
    );
    let err = Config::from_yaml(&empty, "store-test.yaml", Path::new("/tmp")).unwrap_err();
    assert!(
        err.to_string()
            .contains("store-test.yaml: policies.dir: list at least one directory"),
        "{err}"
    );
}

#[test]
fn a_directory_inside_another_is_read_once() {
    let root = tempfile::tempdir().unwrap();
    let inner = root.path().join("oystehr");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(root.path().join("a.yaml"), ALPHA).unwrap();
    std::fs::write(inner.join("b.yaml"), BETA).unwrap();
    let text = format!(
        "auth:\n  issuers:\n    - issuer: https://store.test/\n      audiences: [a]\n      \
         algorithms: [RS256]\n      jwks_url: https://store.test/jwks.json\n\
         policies:\n  dir: [{}, {}]\n",
        root.path().display(),
        inner.display()
    );
    let config = Config::from_yaml(&text, "store-test.yaml", Path::new("/tmp")).unwrap();
    let loaded = load(&config).unwrap();
    assert_eq!(loaded.files.len(), 2, "{:?}", loaded.files);
    let names: Vec<_> = loaded.set.zambdas().map(|z| z.name.clone()).collect();
    assert_eq!(names, ["alpha", "beta"]);

    // the candidate of a file in the inner directory replaces it once
    let candidate = load_with(&config, &inner.join("b.yaml"), GAMMA.to_owned()).unwrap();
    let names: Vec<_> = candidate.set.zambdas().map(|z| z.name.clone()).collect();
    assert_eq!(names, ["alpha", "gamma"]);
}
