//! Proxies and private CAs (issue 27) with real servers on loopback: the fake registry behind
//! TLS whose certificate a CA made in the test signed, for `registry.test`, a name only the
//! proxy resolves; a real `CONNECT` proxy started by the test, which logs each request line and
//! keeps the bytes it tunnels. Every driver mints and sends through it: the blocking and async
//! clients in this process (explicit proxy), their examples and the `icr-app` CLI as processes
//! (the proxy from the environment, `NO_PROXY`, `ICR_PROXY`, `--proxy`, `--ca-file`,
//! `SSL_CERT_FILE`).

use std::path::PathBuf;
use std::process::{Command, Output};

use http::Method;
use icr_app_core::{Error, InstallationId, TransportErrorKind};
use icr_app_e2e::{Setup, build_cli, build_example, without_settings};
use icr_app_testkit::{ConnectProxy, ConnectProxyBuilder, TestCa, TlsFront};

/// The registry's name: only the proxy resolves it (to the TLS front).
const HOST: &str = "registry.test";
const BASE_URL: &str = "https://registry.test";
const PROXY_VARIABLES: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The fake registry behind TLS for `registry.test`, its CA in a PEM file, and a proxy.
struct Net {
    setup: Setup,
    _front: TlsFront,
    ca_file: PathBuf,
    proxy: ConnectProxy,
    front_addr: std::net::SocketAddr,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

impl Net {
    fn new(label: &str) -> Self {
        Self::with_proxy(label, |p| p)
    }

    fn with_proxy(label: &str, proxy: impl FnOnce(ConnectProxyBuilder) -> ConnectProxyBuilder) -> Self {
        let setup = Setup::new(1);
        let ca = TestCa::new();
        let (cert, key) = ca.issue(&[HOST]);
        let front = TlsFront::start(setup.registry.addr(), &cert, &key).unwrap();
        let ca_file = std::env::temp_dir().join(format!("icr-e2e-proxies-{}-{label}.pem", std::process::id()));
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
        let proxy = proxy(ConnectProxy::builder().resolve(HOST, front.addr()))
            .start()
            .unwrap();
        Self {
            setup,
            front_addr: front.addr(),
            _front: front,
            ca_file,
            proxy,
        }
    }

    fn app(&self) -> icr_app_core::App {
        self.setup.builder().base_url(BASE_URL).build().unwrap()
    }

    fn installation(&self) -> &InstallationId {
        &self.setup.installations[0]
    }

    /// The proxy saw only `CONNECT registry.test:443` and, in each tunnel, TLS records that
    /// carry none of `secrets` (and no `Authorization`).
    fn assert_only_tunnels(&self, secrets: &[&str]) {
        let lines = self.proxy.request_lines();
        assert!(!lines.is_empty(), "the proxy saw nothing");
        for line in &lines {
            assert_eq!(line, "CONNECT registry.test:443 HTTP/1.1", "{lines:?}");
        }
        for tunnel in self.proxy.tunneled() {
            assert_eq!(
                tunnel.first(),
                Some(&0x16),
                "a tunnel that does not start with a TLS handshake"
            );
            let text = String::from_utf8_lossy(&tunnel).to_ascii_lowercase();
            assert!(
                !text.contains("authorization") && !text.contains("/app/"),
                "clear HTTP in the tunnel"
            );
            for secret in secrets {
                assert!(!text.contains(&secret.to_ascii_lowercase()), "a secret in the tunnel");
            }
        }
    }

    /// The registry minted for the installation (and so saw the JWT) through the tunnel.
    fn assert_minted(&self) {
        assert!(self.setup.registry.mint_count(self.installation().as_str()) >= 1);
    }
}

fn transport(e: &Error) -> (TransportErrorKind, String) {
    match e {
        Error::Transport { kind, message } => (*kind, message.clone()),
        other => panic!("not a transport error: {other:?}"),
    }
}

#[test]
fn ureq_mints_and_sends_through_a_connect_proxy_with_a_private_ca() {
    let net = Net::new("ureq");
    let client = icr_app_ureq::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    let token = client.installation_token(net.installation()).unwrap();
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let response = client.send_as_installation(net.installation(), request).unwrap();
    assert_eq!(response.status(), 200);
    net.assert_minted();
    net.assert_only_tunnels(&[token.secret().expose()]);
    assert!(net.setup.registry.requests().iter().any(|r| r.path == "/projects"));
}

#[test]
fn reqwest_mints_and_sends_through_a_connect_proxy_with_a_private_ca() {
    let net = Net::new("reqwest");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    let token = runtime.block_on(client.installation_token(net.installation())).unwrap();
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let response = runtime
        .block_on(client.send_as_installation(net.installation(), request))
        .unwrap();
    assert_eq!(response.status(), 200);
    net.assert_minted();
    net.assert_only_tunnels(&[token.secret().expose()]);
}

#[test]
fn without_the_ca_the_registry_is_not_trusted() {
    let net = Net::new("no-ca");
    let client = icr_app_ureq::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .build()
        .unwrap();
    let (kind, message) = transport(&client.installation_token(net.installation()).unwrap_err());
    assert_eq!(kind, TransportErrorKind::Connect, "{message}");
    assert!(message.to_ascii_lowercase().contains("certificate"), "{message}");
    assert_eq!(net.setup.registry.mint_count(net.installation().as_str()), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .build()
        .unwrap();
    let (kind, _) = transport(
        &runtime
            .block_on(client.installation_token(net.installation()))
            .unwrap_err(),
    );
    assert_eq!(kind, TransportErrorKind::Connect);
}

#[test]
fn a_missing_or_bad_ca_file_is_named() {
    let net = Net::new("bad-ca");
    let missing = net.ca_file.with_extension("missing");
    for e in [
        icr_app_ureq::Client::builder(net.app())
            .ca_file(&missing)
            .build()
            .unwrap_err(),
        icr_app_reqwest::Client::builder(net.app())
            .ca_file(&missing)
            .build()
            .unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(
            text.contains(&missing.display().to_string()) && text.contains("PEM"),
            "{text}"
        );
    }
    let not_pem = net.ca_file.with_extension("txt");
    std::fs::write(&not_pem, "hello").unwrap();
    let text = icr_app_ureq::Client::builder(net.app())
        .ca_file(&not_pem)
        .build()
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&not_pem).unwrap();
    assert!(text.contains("holds no certificate"), "{text}");
}

#[test]
fn a_proxy_that_requires_credentials() {
    let net = Net::with_proxy("auth", |p| p.basic_auth("proxy-user", "Pr0xy-Secret"));
    let right = net.proxy.url_with_credentials("proxy-user", "Pr0xy-Secret");
    let wrong = net.proxy.url_with_credentials("proxy-user", "Wr0ng-Secret");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let builder = icr_app_ureq::Client::builder(net.app())
        .proxy(&right)
        .ca_file(&net.ca_file);
    assert!(!format!("{builder:?}").contains("Pr0xy-Secret"));
    builder.build().unwrap().installation_token(net.installation()).unwrap();
    let async_client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&right)
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    runtime
        .block_on(async_client.installation_token(net.installation()))
        .unwrap();
    net.assert_only_tunnels(&["Pr0xy-Secret"]);

    let proxy_name = format!("http://{}", net.proxy.addr());
    let sync_error = icr_app_ureq::Client::builder(net.app())
        .proxy(&wrong)
        .ca_file(&net.ca_file)
        .build()
        .unwrap()
        .installation_token(net.installation())
        .unwrap_err();
    let async_client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&wrong)
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    let async_error = runtime
        .block_on(async_client.installation_token(net.installation()))
        .unwrap_err();
    for error in [sync_error, async_error] {
        let text = format!("{error} {error:?}");
        assert!(!text.contains("Wr0ng-Secret") && !text.contains("proxy-user"), "{text}");
        assert!(text.contains(&proxy_name) && text.contains("credentials"), "{text}");
    }
}

#[test]
fn a_proxy_that_refuses_or_is_not_there_is_named() {
    let net = Net::with_proxy("forbid", ConnectProxyBuilder::forbid_all);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!("http://{}", net.proxy.addr());
    let sync_error = icr_app_ureq::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .ca_file(&net.ca_file)
        .build()
        .unwrap()
        .installation_token(net.installation())
        .unwrap_err();
    let async_client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&net.proxy.url())
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    let async_error = runtime
        .block_on(async_client.installation_token(net.installation()))
        .unwrap_err();
    for error in [sync_error, async_error] {
        let (kind, message) = transport(&error);
        assert_eq!(kind, TransportErrorKind::Connect, "{message}");
        assert!(
            message.contains(&name) && message.contains("refused to open a tunnel"),
            "{message}"
        );
    }

    // Nothing listens there (a port just freed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://user:Gone-Secret@{closed}");
    let sync_error = icr_app_ureq::Client::builder(net.app())
        .proxy(&url)
        .ca_file(&net.ca_file)
        .build()
        .unwrap()
        .installation_token(net.installation())
        .unwrap_err();
    let async_client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&url)
        .ca_file(&net.ca_file)
        .build()
        .unwrap();
    let async_error = runtime
        .block_on(async_client.installation_token(net.installation()))
        .unwrap_err();
    for error in [sync_error, async_error] {
        let (kind, message) = transport(&error);
        assert_eq!(kind, TransportErrorKind::Connect, "{message}");
        assert!(
            message.contains(&format!("http://{closed}")) && !message.contains("Gone-Secret"),
            "{message}"
        );
    }
}

#[test]
fn a_plain_http_registry_behind_a_proxy_is_refused_unless_allowed() {
    let net = Net::new("http");
    let app = || net.setup.builder().base_url("http://registry.test").build().unwrap();
    for error in [
        icr_app_ureq::Client::builder(app())
            .proxy(&net.proxy.url())
            .build()
            .unwrap_err(),
        icr_app_reqwest::Client::builder(app())
            .proxy(&net.proxy.url())
            .build()
            .unwrap_err(),
    ] {
        let text = error.to_string();
        assert!(
            text.contains("in clear") && text.contains("https://") && text.contains("NO_PROXY"),
            "{text}"
        );
        assert!(text.contains(&net.proxy.url()), "{text}");
    }
    assert!(net.proxy.request_lines().is_empty());

    // Allowed: a forward request through the proxy (which then reads everything), here one
    // that sends registry.test to the plain registry.
    let forward = ConnectProxy::builder()
        .resolve(HOST, net.setup.registry.addr())
        .start()
        .unwrap();
    let transport = icr_app_ureq::UreqTransport::new().allow_insecure_http(true);
    let client = icr_app_ureq::Client::builder(app())
        .transport(transport)
        .proxy(&forward.url())
        .build()
        .unwrap();
    client.installation_token(net.installation()).unwrap();
    let lines = forward.request_lines();
    // (ureq tunnels plain http too: the proxy still reads it inside the tunnel.)
    assert!(!lines.is_empty(), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("POST http://registry.test/") || l.starts_with("CONNECT registry.test:80 ")),
        "{lines:?}"
    );
}

#[test]
fn loopback_registries_never_use_the_proxy() {
    let net = Net::new("loopback");
    let app = net.setup.app();
    let client = icr_app_ureq::Client::builder(app)
        .proxy(&net.proxy.url())
        .build()
        .unwrap();
    client.installation_token(net.installation()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = icr_app_reqwest::Client::builder(net.setup.app())
        .proxy(&net.proxy.url())
        .build()
        .unwrap();
    runtime.block_on(client.installation_token(net.installation())).unwrap();
    assert!(net.proxy.request_lines().is_empty());
    // Nor does the TLS front at https://localhost (the CA's certificate is for registry.test:
    // the handshake fails, but directly).
    let _ = net.front_addr;
}

/// A process with exactly `envs` of the proxy and CA variables and of the `ICR_*` settings.
fn run(program: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    without_settings(&mut cmd);
    for var in PROXY_VARIABLES.into_iter().chain(["SSL_CERT_FILE", "RUST_LOG"]) {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(envs.iter().copied()).output().unwrap()
}

fn settings<'a>(net: &'a Net, key: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ICR_BASE_URL", BASE_URL),
        ("ICR_APP_ID", net.setup.app_id.as_str()),
        ("ICR_PRIVATE_KEY", key),
        ("ICR_INSTALLATION_ID", net.installation().as_str()),
    ]
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_examples_use_the_environments_proxy_and_ssl_cert_file() {
    let net = Net::new("examples");
    let key = icr_app_testkit::DEMO_PRIVATE_KEY_PEM;
    let ca = net.ca_file.to_str().unwrap();
    let proxy = net.proxy.url();
    for (package, example) in [
        ("icr-app-ureq", "ureq_installation_token"),
        ("icr-app-reqwest", "reqwest_installation_token"),
    ] {
        let binary = build_example(package, example, None);
        for variable in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"] {
            net.proxy.clear();
            let mut envs = settings(&net, key);
            envs.extend([(variable, proxy.as_str()), ("SSL_CERT_FILE", ca)]);
            let out = stdout(&run(&binary, &[], &envs));
            assert!(out.contains("\"token\""), "{example} {variable}: {out}");
            net.assert_only_tunnels(&[]);
        }
        // NO_PROXY names the registry: straight to registry.test, which no DNS knows.
        for no_proxy in ["registry.test", ".test", "*", "registry.test:443"] {
            net.proxy.clear();
            let mut envs = settings(&net, key);
            envs.extend([
                ("HTTPS_PROXY", proxy.as_str()),
                ("NO_PROXY", no_proxy),
                ("SSL_CERT_FILE", ca),
            ]);
            let out = run(&binary, &[], &envs);
            assert!(!out.status.success(), "{example} NO_PROXY={no_proxy}");
            assert!(net.proxy.request_lines().is_empty(), "{example} NO_PROXY={no_proxy}");
        }
        // A NO_PROXY for another port or host leaves the proxy in use.
        net.proxy.clear();
        let mut envs = settings(&net, key);
        envs.extend([
            ("HTTPS_PROXY", proxy.as_str()),
            ("NO_PROXY", "registry.test:8443,other.test"),
            ("SSL_CERT_FILE", ca),
        ]);
        stdout(&run(&binary, &[], &envs));
        net.assert_only_tunnels(&[]);
    }
}

#[test]
fn the_cli_takes_proxy_and_ca_file_from_flags_and_variables() {
    let net = Net::with_proxy("cli", |p| p.basic_auth("cli-user", "Cli-Secret"));
    let cli = build_cli();
    let key = icr_app_testkit::DEMO_PRIVATE_KEY_PEM;
    let ca = net.ca_file.to_str().unwrap();
    let with_credentials = net.proxy.url_with_credentials("cli-user", "Cli-Secret");
    let envs = settings(&net, key);

    // Flags.
    let out = stdout(&run(
        &cli,
        &["token", "--proxy", &with_credentials, "--ca-file", ca],
        &envs,
    ));
    assert!(out.starts_with("crs_"), "{out}");
    net.assert_only_tunnels(&[out.trim(), "Cli-Secret"]);
    // Before the subcommand.
    stdout(&run(
        &cli,
        &["--proxy", &with_credentials, "--ca-file", ca, "token"],
        &envs,
    ));

    // Variables: ICR_PROXY, ICR_CA_FILE; and the environment's HTTPS_PROXY with SSL_CERT_FILE.
    let mut with_vars = envs.clone();
    with_vars.extend([("ICR_PROXY", with_credentials.as_str()), ("ICR_CA_FILE", ca)]);
    stdout(&run(&cli, &["token"], &with_vars));
    let mut from_env = envs.clone();
    from_env.extend([("https_proxy", with_credentials.as_str()), ("SSL_CERT_FILE", ca)]);
    stdout(&run(&cli, &["token"], &from_env));
    net.assert_only_tunnels(&["Cli-Secret"]);

    // Wrong credentials: the proxy is named, the password never shown.
    let wrong = net.proxy.url_with_credentials("cli-user", "Wr0ng-Secret");
    let out = run(&cli, &["token", "--proxy", &wrong, "--ca-file", ca, "-v"], &envs);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&net.proxy.url()) && stderr.contains("credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("Wr0ng-Secret") && !String::from_utf8_lossy(&out.stdout).contains("Wr0ng-Secret"));

    // A missing CA file is named.
    let out = run(
        &cli,
        &[
            "token",
            "--proxy",
            &with_credentials,
            "--ca-file",
            "/nonexistent/ca.pem",
        ],
        &envs,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");

    // Loopback registries bypass an environment proxy.
    net.proxy.clear();
    let mut loopback = envs.clone();
    let base = net.setup.registry.base_url();
    loopback[0] = ("ICR_BASE_URL", base.as_str());
    loopback.extend([
        ("HTTPS_PROXY", with_credentials.as_str()),
        ("HTTP_PROXY", with_credentials.as_str()),
    ]);
    stdout(&run(&cli, &["token"], &loopback));
    assert!(net.proxy.request_lines().is_empty());
}

#[test]
fn the_clis_ca_file_is_trusted_for_rediss() {
    let setup = Setup::new(1);
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
    let redis = icr_app_testkit::RedisServer::builder().tls(&cert, &key).start();
    let ca_file = std::env::temp_dir().join(format!("icr-e2e-proxies-{}-rediss.pem", std::process::id()));
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let url = format!("rediss://127.0.0.1:{}/2", redis.port());
    let base = setup.registry.base_url();
    let installation = setup.installations[0].as_str().to_owned();
    let envs = [
        ("ICR_BASE_URL", base.as_str()),
        ("ICR_APP_ID", setup.app_id.as_str()),
        ("ICR_PRIVATE_KEY", icr_app_testkit::DEMO_PRIVATE_KEY_PEM),
        ("ICR_INSTALLATION_ID", installation.as_str()),
        ("ICR_REDIS_URL", url.as_str()),
    ];
    let cli = build_cli();
    // Two processes: the second reads the first one's token from the TLS Redis, no mint.
    let first = stdout(&run(&cli, &["token", "--ca-file", ca_file.to_str().unwrap()], &envs));
    let mut with_var = envs.to_vec();
    let ca_path = ca_file.to_str().unwrap().to_owned();
    with_var.push(("ICR_CA_FILE", ca_path.as_str()));
    let second = stdout(&run(&cli, &["token"], &with_var));
    std::fs::remove_file(&ca_file).unwrap();
    assert_eq!(first, second);
    assert_eq!(setup.registry.mint_count(&installation), 1);
}

#[test]
fn an_https_proxy_is_trusted_through_the_ca_file() {
    let net = Net::new("https-proxy");
    // The proxy spoken to over TLS: TLS in front of it, its certificate from the same CA.
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let proxy_tls = TlsFront::start(net.proxy.addr(), &cert, &key).unwrap();
    let bundle = net.ca_file.with_extension("bundle.pem");
    std::fs::write(
        &bundle,
        format!("{}{}", std::fs::read_to_string(&net.ca_file).unwrap(), ca.cert_pem()),
    )
    .unwrap();
    let url = format!("https://{}", proxy_tls.addr());
    let sync = icr_app_ureq::Client::builder(net.app())
        .proxy(&url)
        .ca_file(&bundle)
        .build()
        .unwrap()
        .installation_token(net.installation());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = icr_app_reqwest::Client::builder(net.app())
        .proxy(&url)
        .ca_file(&bundle)
        .build()
        .unwrap();
    let asynchronous = runtime.block_on(client.installation_token(net.installation()));
    std::fs::remove_file(&bundle).unwrap();
    sync.unwrap();
    asynchronous.unwrap();
    net.assert_only_tunnels(&[]);
}
