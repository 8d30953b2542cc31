//! Safe defaults, over real loopback HTTP, for both transports: response bodies are capped (the
//! default 8 MiB, and a configured cap), every request times out, credentials are not sent over
//! plain `http://` to a remote host unless the user opts in (and the error says how).
//! Redirects and webhook comparisons are covered in `clients.rs` and core's
//! `webhook.rs`.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use icr_app_core::{App, AppKey, Error, RetryPolicy, TransportErrorKind, TransportPolicy};
use icr_app_e2e::Setup;
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, Fault};

/// A one-shot HTTP peer on loopback that answers any request with a 200 whose JSON body is
/// `len` bytes long (with an honest `content-length`).
fn oversized_peer(len: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let mut body = vec![b' '; len];
            body[0] = b'[';
            body[len - 1] = b']';
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn app_at(base_url: &str) -> App {
    App::builder(
        "d23967cc-dd16-452b-8af4-869965745978",
        AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url(base_url)
    .retry(RetryPolicy::never())
    .build()
    .unwrap()
}

fn assert_kind(e: &Error, want: TransportErrorKind) {
    assert!(
        matches!(e, Error::Transport { kind, .. } if *kind == want),
        "expected a {want:?} transport error, got {e:?}"
    );
}

const NINE_MIB: usize = 9 * 1024 * 1024;

mod blocking {
    use super::*;
    use icr_app_ureq::{Client, UreqTransport};

    #[test]
    fn the_default_body_cap_refuses_more_than_8_mib() {
        let base = oversized_peer(NINE_MIB);
        let e = Client::new(app_at(&base)).installations_page(10, 0).unwrap_err();
        assert_kind(&e, TransportErrorKind::BodyTooLarge);
    }

    #[test]
    fn a_configured_body_cap_is_enforced() {
        let s = Setup::new(3);
        let transport = UreqTransport::new().max_body(64);
        let client = Client::with_transport(s.app_with_retry(RetryPolicy::never()), transport);
        let e = client.installations().unwrap_err();
        assert_kind(&e, TransportErrorKind::BodyTooLarge);
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn a_slow_registry_times_out_with_a_clear_error() {
        let s = Setup::new(1);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(300)))
            .build()
            .into();
        let client = Client::with_transport(s.app_with_retry(RetryPolicy::never()), UreqTransport::with_agent(agent));
        s.registry.inject(Fault::Delay(Duration::from_secs(3)), 1);
        let e = client.installation_token(&s.installations[0]).unwrap_err();
        assert_kind(&e, TransportErrorKind::Timeout);
        assert!(e.is_retryable(), "a timeout is worth retrying: {e}");
    }

    #[test]
    fn a_slow_registry_times_out_at_the_transport_timeout() {
        let s = Setup::new(1);
        let client = Client::with_transport(
            s.app_with_retry(RetryPolicy::never()),
            UreqTransport::with_timeout(Duration::from_millis(300)),
        );
        s.registry.inject(Fault::Delay(Duration::from_secs(3)), 1);
        let e = client.installation_token(&s.installations[0]).unwrap_err();
        assert_kind(&e, TransportErrorKind::Timeout);
    }

    #[test]
    fn plain_http_to_a_remote_host_needs_an_explicit_opt_in() {
        let refused = Client::new(app_at("http://registry.invalid")).app_token().unwrap_err();
        assert_kind(&refused, TransportErrorKind::Refused);
        let text = refused.to_string();
        assert!(
            text.contains("https://") && text.contains("allow_insecure_http"),
            "the error says how to proceed: {text}"
        );
        // Opting in lifts the guard: the request now fails only because the host does not exist.
        let transport = UreqTransport::new().allow_insecure_http(true);
        let e = Client::with_transport(app_at("http://registry.invalid"), transport)
            .app_token()
            .unwrap_err();
        assert_kind(&e, TransportErrorKind::Connect);
    }
}

mod nonblocking {
    use super::*;
    use icr_app_reqwest::{Client, ReqwestTransport};

    #[tokio::test]
    async fn the_default_body_cap_refuses_more_than_8_mib() {
        let base = oversized_peer(NINE_MIB);
        let e = Client::new(app_at(&base))
            .unwrap()
            .installations_page(10, 0)
            .await
            .unwrap_err();
        assert_kind(&e, TransportErrorKind::BodyTooLarge);
    }

    #[tokio::test]
    async fn a_configured_body_cap_is_enforced() {
        let s = Setup::new(3);
        let transport = ReqwestTransport::new().unwrap().max_body(64);
        let client = Client::with_transport(s.app_with_retry(RetryPolicy::never()), transport);
        let e = client.installations().await.unwrap_err();
        assert_kind(&e, TransportErrorKind::BodyTooLarge);
    }

    #[tokio::test]
    async fn a_slow_registry_times_out_with_a_clear_error() {
        let s = Setup::new(1);
        // A client of your own: its timeout covers what it sends; a loopback registry is reached
        // through the transport's own proxy-free client, whose limit `timeout` sets.
        let http = ReqwestTransport::client_builder()
            .unwrap()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let client = Client::with_transport(
            s.app_with_retry(RetryPolicy::never()),
            ReqwestTransport::with_client(http).timeout(Duration::from_millis(300)),
        );
        s.registry.inject(Fault::Delay(Duration::from_secs(3)), 1);
        let e = client.installation_token(&s.installations[0]).await.unwrap_err();
        assert_kind(&e, TransportErrorKind::Timeout);
        assert!(e.is_retryable(), "a timeout is worth retrying: {e}");
    }

    #[tokio::test]
    async fn a_slow_registry_times_out_at_the_transport_timeout() {
        let s = Setup::new(1);
        let transport =
            ReqwestTransport::with_policy(TransportPolicy::with_timeout(Duration::from_millis(300))).unwrap();
        let client = Client::with_transport(s.app_with_retry(RetryPolicy::never()), transport);
        s.registry.inject(Fault::Delay(Duration::from_secs(3)), 1);
        let e = client.installation_token(&s.installations[0]).await.unwrap_err();
        assert_kind(&e, TransportErrorKind::Timeout);
        assert!(e.is_retryable(), "a timeout is worth retrying: {e}");
    }

    #[tokio::test]
    async fn plain_http_to_a_remote_host_needs_an_explicit_opt_in() {
        let refused = Client::new(app_at("http://registry.invalid"))
            .unwrap()
            .app_token()
            .await
            .unwrap_err();
        assert_kind(&refused, TransportErrorKind::Refused);
        assert!(refused.to_string().contains("allow_insecure_http"), "{refused}");
        let transport = ReqwestTransport::new().unwrap().allow_insecure_http(true);
        let e = Client::with_transport(app_at("http://registry.invalid"), transport)
            .app_token()
            .await
            .unwrap_err();
        assert_kind(&e, TransportErrorKind::Connect);
    }
}
