//! The SDK's own `tracing` events and `log` records, captured at every level (TRACE and up) while
//! both clients mint, retry, call, are refused and revoke: none holds a key, a JWT or a token.
//!
//! Dependencies log on their own (`ureq_proto` writes raw request and response bytes at log
//! TRACE; see SECURITY.md): this test checks what the SDK itself emits, under the `icr_app*`
//! targets, and that it does emit the request and retry events users filter on.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use icr_app_e2e::Setup;
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, Fault};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event and span, at every level, as `target level message fields` lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Capture {
    fn push(&self, meta: &Metadata<'_>, fields: impl FnOnce(&mut Line<'_>)) {
        let mut line = format!("{} {}", meta.target(), meta.level());
        fields(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.push(span.metadata(), |line| span.record(line));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("span record");
        values.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        self.push(event.metadata(), |line| event.record(line));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// `log` records at every level, kept with their target.
struct LogCapture(Mutex<Vec<(String, String)>>);

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((record.target().to_owned(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static LOG: LogCapture = LogCapture(Mutex::new(Vec::new()));

/// What must never appear: the tokens the registry issued, the JWTs, and the key's base64 lines.
fn secrets(setup: &Setup, jwts: &[String]) -> Vec<String> {
    let mut s: Vec<String> = setup
        .registry
        .requests()
        .iter()
        .flat_map(|r| {
            r.headers
                .iter()
                .filter(|(n, _)| n == "authorization")
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    s.extend(
        jwts.iter()
            .flat_map(|j| j.split('.').map(str::to_owned).collect::<Vec<_>>()),
    );
    s.extend(
        DEMO_PRIVATE_KEY_PEM
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .map(str::to_owned),
    );
    s.retain(|x| x.len() >= 16);
    s.into_iter()
        .map(|x| x.trim_start_matches("Bearer ").to_owned())
        .collect()
}

#[test]
fn the_sdk_emits_no_secret_at_any_level() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let capture = Capture::default();
    let setup = Setup::new(2);
    let mut jwts = Vec::new();
    tracing::subscriber::with_default(capture.clone(), || {
        let client = icr_app_ureq::Client::new(setup.app());
        jwts.push(client.jwt().unwrap().token().expose().to_owned());
        setup.registry.inject(
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            1,
        );
        let token = client.installation_token(&setup.installations[0]).unwrap();
        let _: serde_json::Value = client
            .get_json(&setup.installations[0], "/projects?limit=1&page=0")
            .unwrap();
        setup.registry.expire_token(token.secret().expose());
        let _: serde_json::Value = client
            .get_json(&setup.installations[0], "/projects?limit=1&page=0")
            .unwrap();
        let _ = client.installation(&icr_app_core::InstallationId::new("no-such-installation").unwrap());
        client.revoke_all().unwrap();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
            jwts.push(client.jwt().await.unwrap().token().expose().to_owned());
            setup.registry.inject(
                Fault::Status {
                    status: 429,
                    retry_after: Some(0),
                },
                1,
            );
            let _ = client.installation_token(&setup.installations[1]).await.unwrap();
            let _: serde_json::Value = client
                .get_json(&setup.installations[1], "/projects?limit=1&page=0")
                .await
                .unwrap();
            client.revoke_all().await.unwrap();
        });
    });
    let secrets = secrets(&setup, &jwts);
    assert!(secrets.len() > 10, "the test knows the secrets to look for");

    let lines = capture.lines();
    let ours: Vec<&String> = lines.iter().filter(|l| l.starts_with("icr_app")).collect();
    assert!(
        ours.iter()
            .any(|l| l.contains("\"request\"") || l.contains("message=request")),
        "{ours:#?}"
    );
    assert!(
        ours.iter().any(|l| l.contains("retrying")),
        "retries are reported: {ours:#?}"
    );
    for line in &ours {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a tracing event leaks a secret: {line}"
            );
        }
    }
    let records = LOG.0.lock().unwrap().clone();
    for (target, message) in records.iter().filter(|(t, _)| t.starts_with("icr_app")) {
        for secret in &secrets {
            assert!(
                !message.contains(secret.as_str()),
                "a log record of {target} leaks a secret: {message}"
            );
        }
    }
}
