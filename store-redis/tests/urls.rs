//! The URL forms against real servers: passwords and ACL users, database numbers, unix sockets,
//! TLS; and no password in any message or `Debug`, whatever fails.

mod common;

use std::time::Duration;

use common::{SLOW_MACHINE, SilentServer, closed_port, get, paths, put, raw};
use icr_app_core::{Error, StoreReply, TransportErrorKind};
use icr_app_redis::RedisStore;
use icr_app_testkit::RedisServer;
use redis::Commands as _;

/// Every way `error` can be shown.
fn shown(error: &Error) -> String {
    format!("{error} {error:?}")
}

#[test]
fn a_password_in_the_url_logs_in_and_a_wrong_one_is_named_as_such() {
    let redis = RedisServer::builder().requirepass("s3cret-Pass").start();
    let port = redis.port();
    let good = RedisStore::connect(&format!("redis://:s3cret-Pass@127.0.0.1:{port}")).unwrap();
    let wrong = RedisStore::connect(&format!("redis://:wr0ng-Pass@127.0.0.1:{port}")).unwrap();
    let none = RedisStore::connect(&format!("redis://127.0.0.1:{port}")).unwrap();
    for path in paths() {
        assert_eq!(
            path.run(&good, &get("k")).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );

        let error = path.run(&wrong, &get("k")).unwrap_err();
        let text = shown(&error);
        assert!(text.contains("refused the credentials"), "{}: {text}", path.name);
        assert!(text.contains(&format!("redis://:***@127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("wr0ng-Pass") && !text.contains("s3cret-Pass"), "{text}");

        let error = path.run(&none, &get("k")).unwrap_err();
        assert!(
            shown(&error).contains("refused the credentials"),
            "{}: {error}",
            path.name
        );
        assert!(shown(&error).contains("NOAUTH"), "{}: {error}", path.name);
    }
    assert!(!format!("{good:?}").contains("s3cret"));
    assert!(format!("{good:?}").contains(&format!("redis://:***@127.0.0.1:{port}")));
}

#[test]
fn an_acl_user_with_a_password_needing_escapes_logs_in() {
    let redis = RedisServer::builder().acl_user("fleet", "p@ss:w/rd%").start();
    let port = redis.port();
    let url = format!("redis://fleet:p%40ss%3Aw%2Frd%25@127.0.0.1:{port}/");
    let store = RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        path.run(&store, &put(&entry, b"v", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        assert_eq!(
            path.run(&store, &get(&entry)).unwrap(),
            StoreReply::Value(Some(b"v".to_vec()))
        );
    }
    let debug = format!("{store:?}");
    assert!(
        debug.contains(&format!("redis://fleet:***@127.0.0.1:{port}/")),
        "{debug}"
    );
    assert!(!debug.contains("p%40ss") && !debug.contains("p@ss"), "{debug}");

    let wrong = RedisStore::connect(&format!("redis://fleet:nope@127.0.0.1:{port}/")).unwrap();
    for path in paths() {
        let error = path.run(&wrong, &get("k")).unwrap_err();
        assert!(
            shown(&error).contains("refused the credentials"),
            "{}: {error}",
            path.name
        );
        assert!(!shown(&error).contains("nope"), "{error}");
    }
}

#[test]
fn the_database_number_in_the_url_is_used() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&format!("{}/5", redis.url()))
        .unwrap()
        .timeout(SLOW_MACHINE);
    let mut db0 = raw(&redis.url());
    let mut db5 = raw(&format!("{}/5", redis.url()));
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        path.run(&store, &put(&entry, b"v", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        assert!(db5.exists::<_, bool>(&entry).unwrap(), "{}: in database 5", path.name);
        assert!(
            !db0.exists::<_, bool>(&entry).unwrap(),
            "{}: not in database 0",
            path.name
        );
    }
    // A database the server does not have.
    let store = RedisStore::connect(&format!("{}/99", redis.url()))
        .unwrap()
        .timeout(SLOW_MACHINE);
    for path in paths() {
        let error = path.run(&store, &get("k")).unwrap_err();
        assert!(
            shown(&error).contains("DB index is out of range"),
            "{}: {error}",
            path.name
        );
    }
}

#[test]
fn a_unix_socket_url_works() {
    let redis = RedisServer::builder().unix_socket().requirepass("sock-Secret").start();
    let socket = redis.unix_socket().unwrap();
    let url = format!("unix://{}?db=3&pass=sock-Secret", socket.display());
    let store = RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
    for path in paths() {
        assert_eq!(
            path.run(&store, &get("k")).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );
    }
    let debug = format!("{store:?}");
    assert!(debug.contains("pass=***") && !debug.contains("sock-Secret"), "{debug}");
}

#[test]
fn no_failure_shows_the_password() {
    let password = "Tr0ub4dor&3-horse";
    let encoded = "Tr0ub4dor%263-horse";
    let wrong_server = RedisServer::builder().requirepass("something-else").start();
    let silent = SilentServer::start();
    let targets = [
        format!("redis://app:{encoded}@127.0.0.1:{}/2", closed_port()),
        format!("redis://app:{encoded}@{}/2", silent.addr),
        format!("redis://:{encoded}@127.0.0.1:{}/2", wrong_server.port()),
        format!("rediss://app:{encoded}@127.0.0.1:{}/2", wrong_server.port()),
    ];
    for url in &targets {
        let store = RedisStore::connect(url).unwrap().timeout(Duration::from_millis(100));
        let debug = format!("{store:?}");
        assert!(!debug.contains(password) && !debug.contains(encoded), "{debug}");
        for path in paths() {
            let error = path.run(&store, &get("k")).unwrap_err();
            let text = shown(&error);
            assert!(
                !text.contains(password) && !text.contains(encoded) && !text.contains("Tr0ub"),
                "{}: {text}",
                path.name
            );
            assert!(text.contains(":***@127.0.0.1:"), "{}: {text}", path.name);
        }
    }
    // Refused URLs do not quote it either.
    for url in [
        format!("redis://app:{encoded}@127.0.0.1:99999/"),
        format!("redis://app:{encoded}@127.0.0.1/x"),
        format!("https://app:{encoded}@127.0.0.1/"),
    ] {
        let text = shown(&RedisStore::connect(&url).unwrap_err());
        assert!(!text.contains("Tr0ub"), "{text}");
    }
}

/// A CA and a server certificate it signed, for 127.0.0.1 and localhost: `(ca, cert, key)`.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

#[test]
fn rediss_connects_with_tls_and_checks_the_certificate() {
    let (ca, cert, key) = certificates();
    let redis = RedisServer::builder()
        .tls(&cert, &key)
        .requirepass("tls-Secret")
        .start();
    let url = format!("rediss://:tls-Secret@127.0.0.1:{}/1", redis.port());

    let store = RedisStore::connect(&url)
        .unwrap()
        .timeout(SLOW_MACHINE)
        .tls_root_certificates(ca.as_bytes())
        .unwrap();
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        path.run(&store, &put(&entry, b"v", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        assert_eq!(
            path.run(&store, &get(&entry)).unwrap(),
            StoreReply::Value(Some(b"v".to_vec())),
            "{}",
            path.name
        );
    }

    // Without the CA (this machine's roots only): refused, and the message says why.
    let untrusted = RedisStore::connect(&url).unwrap();
    for path in paths() {
        let error = path.run(&untrusted, &get("k")).unwrap_err();
        let text = shown(&error);
        assert!(
            matches!(
                error,
                Error::Store {
                    kind: TransportErrorKind::Connect,
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("certificate"), "{}: {text}", path.name);
        assert!(!text.contains("tls-Secret"), "{text}");
    }

    // Plain redis:// to a TLS port: fails within the timeout, not hanging.
    let plain = RedisStore::connect(&format!("redis://:tls-Secret@127.0.0.1:{}/1", redis.port()))
        .unwrap()
        .timeout(Duration::from_millis(200));
    for path in paths() {
        let started = std::time::Instant::now();
        assert!(path.run(&plain, &get("k")).is_err(), "{}", path.name);
        assert!(started.elapsed() < Duration::from_millis(400), "{}", path.name);
    }

    // Roots are for rediss:// only, and must be certificates.
    let error = RedisStore::connect("redis://127.0.0.1/")
        .unwrap()
        .tls_root_certificates(ca.as_bytes())
        .unwrap_err();
    assert!(error.to_string().contains("rediss://"), "{error}");
    let error = RedisStore::connect(&url)
        .unwrap()
        .tls_root_certificates(b"not a pem")
        .unwrap_err();
    assert!(error.to_string().contains("no certificate"), "{error}");
}
