//! Tests of the request descriptions: ids, paths, headers, base URLs and the transport and target checks.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};

use super::*;
use crate::models::CreateUserOrganization;
use crate::secret::SecretString;

fn jwt() -> SecretString {
    SecretString::new("eyJ.a.b")
}

#[test]
fn ids_held_in_place_and_on_the_heap_behave_as_their_text() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    let hash = |id: &InstallationId| {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    };
    // The in-place form stays small enough for a cache slot.
    assert_eq!(std::mem::size_of::<InstallationId>(), 40);
    assert_eq!(std::mem::size_of::<crate::TokenScope>(), 40);
    // Around the boundary between the two forms, and multi-byte characters across it.
    let texts = [
        "a".repeat(37),
        "a".repeat(38),
        "a".repeat(39),
        "b".repeat(38),
        format!("{}é", "a".repeat(36)),
        format!("{}é", "a".repeat(37)),
        "123e4567-e89b-12d3-a456-426614174000".to_owned(),
        "é".repeat(128),
    ];
    for a in &texts {
        let id = InstallationId::new(a.clone()).unwrap();
        assert_eq!(id.as_str(), a);
        assert_eq!(id.to_string(), *a);
        assert_eq!(String::from(id.clone()), *a);
        assert_eq!(format!("{id:?}"), format!("InstallationId({a:?})"));
        let back: InstallationId = serde_json::from_value(serde_json::to_value(&id).unwrap()).unwrap();
        assert_eq!(back, id);
        assert_eq!(hash(&back), hash(&id));
        for b in &texts {
            let other = InstallationId::new(b.clone()).unwrap();
            assert_eq!(id == other, a == b, "{a} vs {b}");
            assert_eq!(id.cmp(&other), a.cmp(b), "{a} vs {b}");
        }
    }
}

#[test]
fn standard_headers_and_paths() {
    let api = ApiConfig::new();
    let id = InstallationId::new("123e4567-e89b-12d3-a456-426614174000").unwrap();
    let r = api.installation_access_token(&jwt(), &id).unwrap();
    assert_eq!(r.method(), Method::POST);
    assert_eq!(
        r.uri().to_string(),
        "https://api.carbonregistry.com/app/installations/123e4567-e89b-12d3-a456-426614174000/accessTokens"
    );
    assert_eq!(r.headers()[ACCEPT], "application/json");
    assert_eq!(r.headers()[API_VERSION_HEADER], "2023-06-16");
    assert_eq!(r.headers()[AUTHORIZATION], "Bearer eyJ.a.b");
    assert!(r.headers()[AUTHORIZATION].is_sensitive());
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    assert!(r.headers()[USER_AGENT].to_str().unwrap().starts_with("icr-app-core/"));
    assert_eq!(r.body(), b"{}");

    let r = api.list_installations(&jwt(), 10, 0).unwrap();
    assert_eq!(
        r.uri().path_and_query().unwrap().as_str(),
        "/app/installations?limit=10&page=0"
    );
    assert!(r.headers().get(CONTENT_TYPE).is_none());
    assert!(r.body().is_empty());

    let r = api.revoke_token(&SecretString::new("crs_abc")).unwrap();
    assert_eq!(r.method(), Method::DELETE);
    assert_eq!(r.uri().path(), "/app/installations/token");
    assert_eq!(r.headers()[AUTHORIZATION], "Bearer crs_abc");

    assert_eq!(api.app_access_token(&jwt()).unwrap().uri().path(), "/app/accessTokens");
    assert_eq!(
        api.get_installation(&jwt(), &id).unwrap().uri().path(),
        format!("/app/installations/{id}")
    );
    let org = OrganizationId::new("3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44").unwrap();
    let r = api.get_organization_installation(&jwt(), &org).unwrap();
    assert_eq!(r.method(), Method::GET);
    assert_eq!(
        r.uri().to_string(),
        "https://api.carbonregistry.com/app/organizations/3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44/installation"
    );
    assert_eq!(r.headers()[AUTHORIZATION], "Bearer eyJ.a.b");
    assert!(r.body().is_empty());
    let back: OrganizationId = serde_json::from_value(serde_json::to_value(&org).unwrap()).unwrap();
    assert_eq!(
        (back.to_string(), format!("{back:?}")),
        (org.to_string(), format!("OrganizationId({:?})", org.as_str()))
    );
}

#[test]
fn ids_cannot_change_the_path() {
    let api = ApiConfig::new();
    let evil = InstallationId::new("../../organizations/x?y=1#z").unwrap();
    let r = api.get_installation(&jwt(), &evil).unwrap();
    assert_eq!(
        r.uri().path(),
        "/app/installations/..%2F..%2Forganizations%2Fx%3Fy%3D1%23z"
    );
    assert!(r.uri().query().is_none());
    let r = api.installation_access_token(&jwt(), &evil).unwrap();
    assert_eq!(
        r.uri().path(),
        "/app/installations/..%2F..%2Forganizations%2Fx%3Fy%3D1%23z/accessTokens"
    );
    assert!(r.uri().query().is_none());
    assert!(InstallationId::new("..").is_err());
    assert!(InstallationId::new("").is_err());
    assert!(InstallationId::new("a b").is_err());
    assert!(api.get_organization(&jwt(), "").is_err());
    let org = OrganizationId::new("../x?y=1#z").unwrap();
    let r = api.get_organization_installation(&jwt(), &org).unwrap();
    assert_eq!(r.uri().path(), "/app/organizations/..%2Fx%3Fy%3D1%23z/installation");
    assert!(r.uri().query().is_none());
    for bad in ["", ".", "..", "a b", "a\nb"] {
        let e = OrganizationId::new(bad).unwrap_err();
        assert!(e.to_string().contains("organization id"), "{bad:?}: {e}");
    }
    let r = api.get_organization(&jwt(), "ü/x").unwrap();
    assert_eq!(r.uri().path(), "/organizations/%C3%BC%2Fx");
}

#[test]
fn base_url_rules() {
    let api = ApiConfig::new().with_base_url("http://127.0.0.1:8080/prefix/").unwrap();
    assert_eq!(api.base_url(), "http://127.0.0.1:8080/prefix");
    assert_eq!(
        api.app_access_token(&jwt()).unwrap().uri().to_string(),
        "http://127.0.0.1:8080/prefix/app/accessTokens"
    );
    assert!(!api.is_insecure());
    for bad in [
        "",
        "api.carbonregistry.com",
        "ftp://x",
        "https://u:p@x",
        "https://x?q=1",
        "https://x/#f",
        "http://",
    ] {
        assert!(ApiConfig::new().with_base_url(bad).is_err(), "{bad}");
    }
    assert!(
        ApiConfig::new()
            .with_base_url("http://example.com")
            .unwrap()
            .is_insecure()
    );
    assert!(!ApiConfig::new().with_base_url("http://[::1]:9").unwrap().is_insecure());
    assert!(
        !ApiConfig::new()
            .with_base_url("http://localhost:9")
            .unwrap()
            .is_insecure()
    );
    assert!(ApiConfig::new().with_api_version("bad\nversion").is_err());
    let v = ApiConfig::new()
        .with_api_version("2024-01-01")
        .unwrap()
        .with_user_agent("my-app/1.0")
        .unwrap();
    assert_eq!(v.api_version(), "2024-01-01");
    let r = v.app_access_token(&jwt()).unwrap();
    // Replaced, not added beside the defaults.
    assert_eq!(r.headers().get_all(API_VERSION_HEADER).iter().count(), 1);
    assert_eq!(r.headers()[API_VERSION_HEADER], "2024-01-01");
    assert_eq!(r.headers().get_all(USER_AGENT).iter().count(), 1);
    assert_eq!(r.headers()[USER_AGENT], "my-app/1.0");
}

/// Requests are made from the base URL's scheme and authority parsed once and the path: the same
/// URI, headers in the same order, and the same refusals as parsing the whole URL each time.
#[test]
fn request_uris_are_the_whole_url_parsed() {
    assert_eq!(
        ApiConfig::new(),
        ApiConfig::new().with_base_url(DEFAULT_BASE_URL).unwrap()
    );
    let long = format!("/{}", "a".repeat(usize::from(u16::MAX)));
    for base in [
        DEFAULT_BASE_URL,
        "HTTPS://API.Example:8443/",
        "http://127.0.0.1:8080/prefix/v0.5",
        "http://[::1]:9",
        "https://api.example/%7Eicr",
    ] {
        let api = ApiConfig::new().with_base_url(base).unwrap();
        for path in [
            "/",
            "/app/accessTokens",
            "/app/installations?limit=10&page=0",
            "//other.example/x",
            "/a#fragment",
            "/%C3%BC/x",
            "/a b",
            "/\u{e9}",
            long.as_str(),
        ] {
            let whole = format!("{}{path}", api.base_url()).parse::<Uri>();
            match api.request(Method::POST, path, Some(b"{}".to_vec())) {
                Ok(r) => {
                    let whole = whole.unwrap_or_else(|e| panic!("{base} {path}: made, but does not parse whole ({e})"));
                    assert_eq!(*r.uri(), whole, "{base} {path}");
                    assert_eq!(r.uri().to_string(), whole.to_string());
                    let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
                    assert_eq!(names, ["accept", API_VERSION_HEADER, "user-agent", "content-type"]);
                }
                Err(e) => {
                    assert!(whole.is_err(), "{base} {path}: refused ({e}) but parses whole");
                    assert!(e.to_string().contains("not a valid path"), "{e}");
                }
            }
        }
    }
}

#[test]
fn create_user_organization_body() {
    use crate::models::{NewOrganization, NewUser};
    let body = CreateUserOrganization {
        user: NewUser {
            email: "a@example.com".into(),
            full_name: Some("A".into()),
            profile_picture: None,
        },
        organization: NewOrganization {
            full_name: "Org".into(),
            kind: "marketParticipant".into(),
            country_code: Some("IS".into()),
        },
    };
    let r = ApiConfig::new().create_user_organization(&jwt(), &body).unwrap();
    assert_eq!(r.uri().path(), "/app/create/user/organization");
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"user":{"email":"a@example.com","fullName":"A"},"organization":{"fullName":"Org","type":"marketParticipant","countryCode":"IS"}})
    );
    let mut empty = body.clone();
    empty.user.email = " ".into();
    assert!(ApiConfig::new().create_user_organization(&jwt(), &empty).is_err());
}

#[test]
fn plain_http_only_to_loopback() {
    let remote = ApiConfig::new().with_base_url("http://registry.example").unwrap();
    let r = remote.app_access_token(&jwt()).unwrap();
    let e = check_transport_security(&r, false).unwrap_err();
    assert!(e.to_string().contains("allow_insecure_http"), "{e}");
    assert!(check_transport_security(&r, true).is_ok());
    let unauthenticated = remote.request(Method::GET, "/projects", None).unwrap();
    assert!(check_transport_security(&unauthenticated, false).is_ok());
    let local = ApiConfig::new().with_base_url("http://127.0.0.1:1").unwrap();
    assert!(check_transport_security(&local.app_access_token(&jwt()).unwrap(), false).is_ok());
    assert!(check_transport_security(&ApiConfig::new().app_access_token(&jwt()).unwrap(), false).is_ok());
}

#[test]
fn bad_token_characters_are_refused() {
    let mut r = Request::new(());
    assert!(authorize(&mut r, &SecretString::new("a\nb")).is_err());
    let e = ApiConfig::new().request(Method::GET, "projects", None).unwrap_err();
    assert!(e.to_string().contains("must start with"));
}

fn with_scheme(scheme: &str, host: &str) -> Request<Vec<u8>> {
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(host)
        .path_and_query("/app/accessTokens")
        .build()
        .unwrap();
    let mut r = Request::builder().uri(uri).body(Vec::new()).unwrap();
    authorize(&mut r, &jwt()).unwrap();
    r
}

#[test]
fn schemes_are_compared_in_any_case_and_only_http_and_https_pass() {
    for scheme in ["HTTP", "Http", "http"] {
        let e = check_transport_security(&with_scheme(scheme, "registry.example"), false).unwrap_err();
        assert!(e.to_string().contains("plain http://"), "{scheme}: {e}");
        assert!(!e.to_string().contains("eyJ"), "{e}");
        assert_eq!(
            check_transport_security(&with_scheme(scheme, "127.0.0.1:8"), false).unwrap(),
            Route::Direct
        );
    }
    for scheme in ["HTTPS", "https"] {
        assert_eq!(
            check_transport_security(&with_scheme(scheme, "registry.example"), false).unwrap(),
            Route::ProxyAllowed
        );
    }
    for scheme in ["ftp", "ws", "file", "httpx"] {
        assert!(
            check_transport_security(&with_scheme(scheme, "127.0.0.1"), true).is_err(),
            "{scheme}"
        );
    }
    assert!(is_insecure_url("HTTP://registry.example/"));
    assert!(!is_insecure_url("HTTP://LOCALHOST:8/"));
    assert!(!is_insecure_url("http://[::1]:8/"));
}

#[test]
fn loopback_and_plain_http_never_go_through_a_proxy() {
    assert_eq!(
        check_transport_security(&with_scheme("https", "localhost:8"), false).unwrap(),
        Route::Direct
    );
    assert_eq!(
        check_transport_security(&with_scheme("http", "[::1]:8"), false).unwrap(),
        Route::Direct
    );
    // Opted in: plain http to a remote host may use the configured proxy.
    assert_eq!(
        check_transport_security(&with_scheme("http", "registry.example"), true).unwrap(),
        Route::ProxyAllowed
    );
    // Not opted in, nothing secret: straight to the host.
    let bare = Request::builder()
        .uri("http://registry.example/projects")
        .body(())
        .unwrap();
    assert_eq!(check_transport_security(&bare, false).unwrap(), Route::Direct);
}

#[test]
fn base_urls_accept_any_case_and_never_echo_user_info() {
    let api = ApiConfig::new()
        .with_base_url("HTTPS://api.carbonregistry.com/")
        .unwrap();
    assert_eq!(api.base_url(), "https://api.carbonregistry.com");
    let e = ApiConfig::new()
        .with_base_url("https://user:hunter2secret@api.example")
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert_eq!(redact_userinfo("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
    assert_eq!(redact_userinfo("https://h/x@y"), "https://h/x@y");
}

#[test]
fn only_the_registry_gets_tokens_unless_the_caller_opts_in() {
    let api = ApiConfig::new().with_base_url("https://api.example/v0.5").unwrap();
    let ok = |u: &str| api.is_registry(&u.parse().unwrap());
    assert!(ok("https://api.example/v0.5/projects"));
    assert!(ok("HTTPS://API.EXAMPLE:443/v0.5"));
    assert!(
        !ok("https://api.example/v0.55/projects"),
        "a sibling path is not under the base"
    );
    assert!(!ok("https://api.example/projects"));
    assert!(!ok("http://api.example/v0.5/projects"), "scheme");
    assert!(!ok("https://api.example:8443/v0.5/projects"), "port");
    assert!(!ok("https://evil.example/v0.5/projects"), "host");
    assert!(!ok("https://api.example.evil.example/v0.5/projects"));
    let mut elsewhere = Request::builder().uri("https://evil.example/x").body(()).unwrap();
    let e = api.check_target(&elsewhere).unwrap_err();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("evil.example"),
        "{e}"
    );
    elsewhere.extensions_mut().insert(OtherHost);
    assert!(!api.check_target(&elsewhere).unwrap());
    let mine = api.request(Method::GET, "/projects", None).unwrap();
    assert!(api.check_target(&mine).unwrap());
}

#[test]
fn a_path_that_may_resolve_outside_the_base_is_not_the_registrys() {
    let api = ApiConfig::new().with_base_url("https://api.example/v1").unwrap();
    let ok = |u: &str| api.is_registry(&u.parse().unwrap());
    for path in [
        "/v1/../admin",
        "/v1/./../admin",
        "/v1/%2e%2e/admin",
        "/v1/%2E%2E/admin",
        "/v1/%2e%2E/admin",
        "/v1/.%2e/admin",
        "/v1/%2e./admin",
        "/v1/%2e/projects",
        "/v1/projects/..",
        "/v1/projects/%2e%2e",
        "/v1/..;/admin",
        "/v1/%2e%2e;x=1/admin",
        "/v1/%252e%252e/admin",
        "/v1/%2F../admin",
        "/v1/..%2fadmin",
        "/v1/..%2Fadmin",
        "/v1/x%2fy",
        "/v1/..%5cadmin",
        "/v1/..%5Cadmin",
        "/v1/.",
    ] {
        let uri = format!("https://api.example{path}");
        assert!(!ok(&uri), "{path}");
        let request = Request::builder().uri(&uri).body(()).unwrap();
        let e = api.check_target(&request).unwrap_err();
        assert!(
            e.to_string().contains("`..`") && e.to_string().contains("no token is added"),
            "{path}: {e}"
        );
    }
    // Dots inside a segment, and encoded characters other than slashes, are fine.
    for path in [
        "/v1/projects",
        "/v1/v0.5/x",
        "/v1/a..b",
        "/v1/...",
        "/v1/.well-known",
        "/v1/organizations/%C3%BC",
        "/v1/x%20y",
        "/v1/projects?next=../admin",
    ] {
        assert!(ok(&format!("https://api.example{path}")), "{path}");
    }
    // The base without a path: the same rule.
    let root = ApiConfig::new().with_base_url("https://api.example").unwrap();
    assert!(root.is_registry(&"https://api.example/projects".parse().unwrap()));
    assert!(!root.is_registry(&"https://api.example/x/%2e%2e/admin".parse().unwrap()));
}
