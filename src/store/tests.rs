//! The store: one read per load, reloads only on changed content, the
//! config's checks applied for every user, and no lock that can wedge it.

use std::path::Path;

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
