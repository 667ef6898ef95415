use super::*;

fn settings(endpoint: Option<&str>) -> crate::config::Telemetry {
    crate::config::Telemetry {
        otlp_endpoint: endpoint.map(String::from),
        ..crate::config::Telemetry::default()
    }
}

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// The config's endpoint, the environment, and the URL spans go to.
type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], Option<&'a str>);

#[test]
fn the_endpoint_comes_from_the_config_then_the_environment() {
    let base = "OTEL_EXPORTER_OTLP_ENDPOINT";
    let traces = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    let cases: &[Case<'_>] = &[
        (None, &[], None),
        (None, &[(base, " ")], None),
        (
            Some("http://collector:4318"),
            &[(base, "http://other:4318")],
            Some("http://collector:4318/v1/traces"),
        ),
        (
            None,
            &[(base, "http://collector:4318/")],
            Some("http://collector:4318/v1/traces"),
        ),
        (
            None,
            &[(base, "http://a:4318"), (traces, "https://b/custom")],
            Some("https://b/custom"),
        ),
        (
            Some("http://collector:4318"),
            &[("OTEL_SDK_DISABLED", "TRUE")],
            None,
        ),
        (
            None,
            &[
                (base, "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "false"),
            ],
            Some("http://collector:4318/v1/traces"),
        ),
    ];
    for (config, vars, want) in cases {
        let got = endpoint(&settings(*config), env(vars)).unwrap();
        assert_eq!(got.as_deref(), *want, "{config:?} {vars:?}");
    }
    for bad in ["collector:4318", "ftp://collector", "not a url"] {
        let vars = [(base, bad)];
        assert!(
            matches!(
                endpoint(&settings(None), env(&vars)),
                Err(Error::Endpoint { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn methods_are_named_as_the_conventions_name_them() {
    assert_eq!(method_name(&http::Method::POST), "POST");
    assert_eq!(
        method_name(&http::Method::from_bytes(b"PURGE").unwrap()),
        "_OTHER"
    );
    assert_eq!(method_name_str("post"), "_OTHER");
}

#[test]
fn the_untrusted_draw_follows_the_ratio() {
    assert!((0..1000).all(|_| draw(1.0)));
    assert!((0..1000).all(|_| !draw(0.0)));
    let hits = (0..4000).filter(|_| draw(0.5)).count();
    assert!((1000..3000).contains(&hits), "{hits} of 4000 at 0.5");
}

#[test]
fn instants_map_onto_the_wall_clock_in_order() {
    let start = Instant::now();
    let anchor = Anchor::new(start);
    let later = start + Duration::from_millis(5);
    assert_eq!(
        anchor.at(later).duration_since(anchor.at(start)).unwrap(),
        Duration::from_millis(5)
    );
    assert!(anchor.at(start) <= SystemTime::now());
}
