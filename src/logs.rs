//! Log lines as log pipelines (Loki, Elastic, Datadog) read them without a
//! parsing rule: with `log.format: json`, one flat JSON object per line —
//! `timestamp`, `level`, `target`, the message and every field at the top
//! level, and the fields of the spans the line was written in (a traced
//! request's `trace_id` and `span_id`), as oauth2-proxy, OPA and Envoy
//! write them.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The flat JSON event format. Span fields must be recorded as JSON
/// (`fmt_fields(JsonFields::new())`) for them to be lifted to the top.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let mut time = String::new();
        if SystemTime.format_time(&mut Writer::new(&mut time)).is_ok() {
            line.insert("timestamp".into(), Value::String(time));
        }
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Writes an event's fields into the line. Records bridged from the `log`
/// crate (pingora logs through it) carry their origin as `log.*` fields:
/// `log.target` is the line's target, the others are left out.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "log.target" => {
                self.0.insert("target".into(), value);
            }
            name if name.starts_with("log.") => {}
            name => {
                self.0.insert(name.into(), value);
            }
        }
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_field_is_at_the_top_level_with_the_span_ids() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(FlatJson)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "outside", count = 3_u64, "before");
            let span = tracing::error_span!("request", trace_id = "abc", span_id = "def");
            span.in_scope(|| {
                tracing::warn!(
                    target: "zambda_guard::decision",
                    decision = "deny",
                    latency_ms = 1.5,
                    ok = false,
                    "decision"
                );
            });
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "before");
        assert_eq!(lines[0]["count"], 3);
        assert_eq!(lines[0]["target"], "outside");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        let line = &lines[1];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "zambda_guard::decision");
        assert_eq!(line["message"], "decision");
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], false);
        assert_eq!(line["trace_id"], "abc");
        assert_eq!(line["span_id"], "def");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(line.get("fields").is_none() && line.get("span").is_none());
    }
}
