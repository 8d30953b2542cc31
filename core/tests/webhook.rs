//! Webhook verification against independent HMACs (RFC 2104 over `ring::digest`, Python's
//! `hmac`, and fixed vectors made with Python/OpenSSL), plus every refusal path.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use icr_app_core::PermissionLevel;
use icr_app_core::webhook::{
    Delivery, EventKind, SIGNATURE_HEADER, WebhookError, WebhookEvent, WebhookSecret, sign, verify, verify_request,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-Zq8vW2pL5nR7tY1u";

fn secret() -> WebhookSecret {
    WebhookSecret::new(SECRET).unwrap()
}

// ---------------------------------------------------------------------------------------------
// An HMAC-SHA256 written from RFC 2104 over ring's SHA-256, independent of `ring::hmac`.

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

fn rfc2104_hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        sha256(&[key])
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = sha256(&[&ipad, message]);
    sha256(&[&opad, &inner])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn independent_header(secret: &str, signed_data: &str) -> String {
    format!(
        "sha256={}",
        hex(&rfc2104_hmac_sha256(secret.as_bytes(), signed_data.as_bytes()))
    )
}

/// A delivery made without the SDK: base64 of the payload JSON, body = payload + `signedData`,
/// header from the RFC 2104 HMAC above.
fn deliver(secret: &str, payload: &Value) -> (Vec<u8>, String) {
    let signed_data = STANDARD.encode(payload.to_string());
    let mut body = payload.as_object().cloned().unwrap_or_default();
    body.insert("signedData".into(), Value::String(signed_data.clone()));
    (
        Value::Object(body).to_string().into_bytes(),
        independent_header(secret, &signed_data),
    )
}

/// A body whose `signedData` is `signed_data` verbatim, with its correct header.
fn deliver_raw(signed_data: &str) -> (Vec<u8>, String) {
    let body = json!({ "event": "installed", "signedData": signed_data }).to_string();
    (body.into_bytes(), independent_header(SECRET, signed_data))
}

#[test]
fn rfc2104_implementation_matches_rfc4231_vectors() {
    // RFC 4231 test case 2 and test case 6 (key longer than a block).
    assert_eq!(
        hex(&rfc2104_hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&rfc2104_hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "webhooks", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

const FIXTURES: [&str; 2] = ["installed-docs-shape", "warehouse-transaction-real-shape"];

#[test]
fn fixed_vectors_verify_and_match_every_implementation() {
    let secret_text = fixture_text("secret.txt");
    let fixture_secret = WebhookSecret::new(secret_text.clone()).unwrap();
    for name in FIXTURES {
        let body = fixture(&format!("{name}.body.json"));
        let header = fixture_text(&format!("{name}.signature"));
        let signed_data = fixture_text(&format!("{name}.signed-data.txt"));
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["signedData"], signed_data.as_str(), "{name}");
        assert_eq!(sign(&fixture_secret, &signed_data), header, "{name}: sign() vs fixture");
        assert_eq!(
            independent_header(&secret_text, &signed_data),
            header,
            "{name}: RFC 2104 vs fixture"
        );
        let event = verify(&fixture_secret, Some(&header), &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            event.raw,
            serde_json::from_slice::<Value>(&STANDARD.decode(&signed_data).unwrap()).unwrap()
        );
        assert_eq!(
            verify(&secret(), Some(&header), &body),
            Err(WebhookError::Mismatch),
            "{name}: other secret"
        );
    }
}

#[test]
fn docs_shape_fixture_decodes() {
    let secret = WebhookSecret::new(fixture_text("secret.txt")).unwrap();
    let header = fixture_text("installed-docs-shape.signature");
    let event = verify(&secret, Some(&header), &fixture("installed-docs-shape.body.json")).unwrap();
    assert_eq!(event.event, EventKind::Installed);
    assert_eq!(event.state.as_deref(), Some(""));
    assert!(event.transaction.is_none());
    let inst = event.installation.as_ref().unwrap();
    assert_eq!(inst.id, "123");
    assert_eq!(event.installation_id(), Some("123"));
    assert_eq!(inst.app_id.as_deref(), Some("1"));
    assert_eq!(inst.app_name_id.as_deref(), Some("app1"));
    assert_eq!(inst.permissions["organization_inventory"], PermissionLevel::Request);
    let org = inst.organization.as_ref().unwrap();
    assert_eq!(org.name.as_deref(), Some("Organization 1"));
    assert_eq!(org.display_name(), "Organization 1");
    let sender = event.sender.as_ref().unwrap();
    assert_eq!(sender.id, "user1");
    assert_eq!(sender.full_name.as_deref(), Some("John Doe"));
    assert_eq!(sender.email.as_deref(), Some("user@example.com"));
    assert_eq!(
        sender.profile_picture.as_deref(),
        Some("https://example.com/profiles/user1.jpg")
    );
}

#[test]
fn real_shape_fixture_decodes() {
    let secret = WebhookSecret::new(fixture_text("secret.txt")).unwrap();
    let header = fixture_text("warehouse-transaction-real-shape.signature");
    let event = verify(
        &secret,
        Some(&header),
        &fixture("warehouse-transaction-real-shape.body.json"),
    )
    .unwrap();
    assert_eq!(event.event, EventKind::WarehouseTransaction);
    let org = event.installation.as_ref().unwrap().organization.as_ref().unwrap();
    assert_eq!(org.display_name(), "Bosques del Sur S.A.");
    assert_eq!(org.extra["city"], "San José");
    let sender = event.sender.as_ref().unwrap();
    assert_eq!(sender.profile_picture, None);
    assert!(sender.url.as_deref().unwrap().contains("/users/"));
    let tx = event.transaction.as_ref().unwrap();
    assert_eq!(tx.id, "6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b");
    assert_eq!(tx.status.as_deref(), Some("processed"));
    assert_eq!(tx.kind.as_deref(), Some("transfer_retire"));
    assert_eq!(tx.amount.as_ref().and_then(|n| n.as_f64()), Some(12.5));
    assert_eq!(tx.credit_id.as_deref(), Some("c0ffee00-1111-4222-8333-444455556666"));
    assert_eq!(tx.extra["reservationId"], "r-77");
    assert_eq!(
        tx.created_at,
        icr_app_core::Timestamp::parse_rfc3339("2024-03-26T08:50:02.12Z"),
        "createdAt is parsed to the millisecond"
    );
    assert_eq!(tx.created_at.unwrap().unix_millis() % 1000, 120);
    assert!(tx.updated_at.is_some());
}

// ---------------------------------------------------------------------------------------------
// Python's hmac module as a second independent implementation.

fn python_header(secret: &str, signed_data: &str) -> Option<String> {
    let script = "import hmac,hashlib,sys; \
                  print('sha256=' + hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())";
    let mut child = Command::new("python3")
        .args(["-c", script, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    use std::io::Write as _;
    child.stdin.take()?.write_all(signed_data.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(out.status.success(), "python3 failed");
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn python_hmac_agrees() {
    let payload = json!({"event": "installed", "state": "", "installation": {"id": "i-ü"}});
    let delivery = Delivery::new(&secret(), &payload);
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    let signed_data = body["signedData"].as_str().unwrap();
    let cases = [
        (SECRET.to_owned(), signed_data.to_owned()),
        ("k".repeat(100), "short".to_owned()),
        ("ключ секрет".to_owned(), String::new()),
        (
            fixture_text("secret.txt"),
            fixture_text("installed-docs-shape.signed-data.txt"),
        ),
    ];
    for (key, data) in cases {
        let Some(py) = python_header(&key, &data) else {
            eprintln!("python3 not available; skipping the Python cross-check");
            return;
        };
        assert_eq!(
            sign(&WebhookSecret::new(key.clone()).unwrap(), &data),
            py,
            "key len {}",
            key.len()
        );
        assert_eq!(independent_header(&key, &data), py);
    }
    assert_eq!(delivery.signature, python_header(SECRET, signed_data).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Decoding.

fn event_payload(event: &str) -> Value {
    json!({
        "event": event,
        "state": "",
        "installation": {
            "id": "inst-1",
            "organization": {"id": "org1", "fullName": "Org One"},
            "permissions": {"organization_info": "VIEW"},
            "appId": "app-1"
        },
        "sender": {"id": "user1", "email": "u@example.com", "fullName": null, "profilePicture": null},
        "futureField": {"nested": [1, 2, 3]}
    })
}

#[test]
fn every_event_kind_decodes_and_unknown_is_kept() {
    let kinds = [
        ("installed", EventKind::Installed),
        ("uninstalled", EventKind::Uninstalled),
        ("suspended", EventKind::Suspended),
        ("unsuspended", EventKind::Unsuspended),
        ("newPermissionsAccepted", EventKind::NewPermissionsAccepted),
        ("warehouseTransaction", EventKind::WarehouseTransaction),
        ("organizationTransaction", EventKind::OrganizationTransaction),
        ("creditsMinted", EventKind::Other("creditsMinted".into())),
    ];
    for (wire, kind) in kinds {
        let payload = event_payload(wire);
        let (body, header) = deliver(SECRET, &payload);
        let event = verify(&secret(), Some(&header), &body).unwrap_or_else(|e| panic!("{wire}: {e}"));
        assert_eq!(event.event, kind);
        assert_eq!(event.event.as_str(), wire);
        assert_eq!(event.event.to_string(), wire);
        assert_eq!(EventKind::from(wire), kind);
        assert_eq!(event.raw, payload, "raw keeps the whole signed payload");
        assert_eq!(event.raw["futureField"]["nested"][2], 3);
        assert_eq!(event.installation_id(), Some("inst-1"));
        assert_eq!(event.sender.as_ref().unwrap().full_name, None);
        assert_eq!(event.state.as_deref(), Some(""));
    }
}

#[test]
fn transaction_present_absent_null_and_lenient() {
    let mut payload = event_payload("organizationTransaction");
    payload["transaction"] = json!({"id": "tx1", "status": "pending_queue", "type": "retire", "amount": "3",
        "creditId": "c1", "createdAt": "2024-03-26T08:47:15.356+00:00", "newThing": true});
    let (body, header) = deliver(SECRET, &payload);
    let tx = verify(&secret(), Some(&header), &body).unwrap().transaction.unwrap();
    assert_eq!(tx.amount.unwrap().as_u64(), Some(3), "a numeric string is accepted");
    assert_eq!(tx.extra["newThing"], true);
    assert_eq!(tx.updated_at, None);

    payload["transaction"] = json!({"id": "tx2", "amount": 1});
    let (body, header) = deliver(SECRET, &payload);
    let tx = verify(&secret(), Some(&header), &body).unwrap().transaction.unwrap();
    assert_eq!(tx.amount.unwrap().as_u64(), Some(1));
    assert_eq!(tx.status, None);

    payload["transaction"] = Value::Null;
    let (body, header) = deliver(SECRET, &payload);
    assert_eq!(verify(&secret(), Some(&header), &body).unwrap().transaction, None);

    let minimal = json!({"event": "suspended"});
    let (body, header) = deliver(SECRET, &minimal);
    let event = verify(&secret(), Some(&header), &body).unwrap();
    assert_eq!(event.event, EventKind::Suspended);
    assert!(event.installation.is_none() && event.sender.is_none() && event.state.is_none());
}

#[test]
fn delivery_helper_matches_independent_construction() {
    let payload = event_payload("installed");
    let delivery = Delivery::new(&secret(), &payload);
    assert_eq!(
        (delivery.body.clone(), delivery.signature.clone()),
        deliver(SECRET, &payload)
    );
    let request = delivery
        .clone()
        .into_request("https://app.example.com/webhooks")
        .unwrap();
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.headers()[SIGNATURE_HEADER], delivery.signature.as_str());
    assert_eq!(request.headers()[http::header::CONTENT_TYPE], "application/json");
    assert_eq!(verify_request(&secret(), &request).unwrap().event, EventKind::Installed);
}

#[test]
fn unsigned_outer_fields_are_ignored() {
    let (body, header) = deliver(SECRET, &event_payload("installed"));
    let mut outer: Value = serde_json::from_slice(&body).unwrap();
    outer["event"] = json!("uninstalled");
    outer["installation"]["id"] = json!("someone-else");
    let event = verify(&secret(), Some(&header), outer.to_string().as_bytes()).unwrap();
    assert_eq!(event.event, EventKind::Installed);
    assert_eq!(event.installation_id(), Some("inst-1"));
}

#[test]
fn signed_data_with_json_escapes_is_hashed_as_its_string_value() {
    // `\/` is how some serializers write `/`; the HMAC covers the string value, as the
    // registry's reference handler computes it after JSON.parse.
    let signed_data = STANDARD.encode(r#"{"event":"installed","x":"??>>??"}"#);
    assert!(signed_data.contains('/'), "{signed_data}");
    let header = independent_header(SECRET, &signed_data);
    let body = format!(r#"{{"signedData":"{}"}}"#, signed_data.replace('/', "\\/"));
    assert_eq!(
        verify(&secret(), Some(&header), body.as_bytes()).unwrap().event,
        EventKind::Installed
    );
}

#[test]
fn unpadded_base64_is_accepted() {
    let json = r#"{"event":"installed","state":""}"#;
    let unpadded = STANDARD_NO_PAD.encode(json);
    assert_ne!(unpadded, STANDARD.encode(json), "the test needs padding to matter");
    let (body, header) = deliver_raw(&unpadded);
    assert_eq!(
        verify(&secret(), Some(&header), &body).unwrap().event,
        EventKind::Installed
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[test]
fn header_problems() {
    let (body, header) = deliver(SECRET, &event_payload("installed"));
    assert_eq!(verify(&secret(), None, &body), Err(WebhookError::MissingSignature));
    let digest = header.strip_prefix("sha256=").unwrap();
    for wrong in [
        digest.to_owned(),
        format!("sha1={digest}"),
        format!("sha-256={digest}"),
        String::new(),
    ] {
        assert_eq!(
            verify(&secret(), Some(&wrong), &body),
            Err(WebhookError::WrongPrefix),
            "{wrong:?}"
        );
    }
    for bad in [
        format!("sha256={}", &digest[..63]),
        format!("sha256={digest}0"),
        format!("sha256={}z", &digest[..63]),
        format!("sha256= {digest}"),
        "sha256=".to_owned(),
    ] {
        assert_eq!(
            verify(&secret(), Some(&bad), &body),
            Err(WebhookError::BadSignatureEncoding),
            "{bad:?}"
        );
    }
    // Upper-case hex, an upper-case scheme and surrounding whitespace are accepted.
    assert!(verify(&secret(), Some(&format!("sha256={}", digest.to_uppercase())), &body).is_ok());
    assert!(verify(&secret(), Some(&format!("SHA256={digest}")), &body).is_ok());
    assert!(verify(&secret(), Some(&format!(" {header} ")), &body).is_ok());
}

#[test]
fn mismatches() {
    let payload = event_payload("installed");
    let (body, header) = deliver(SECRET, &payload);
    // Another secret.
    let (_, other) = deliver("another-secret", &payload);
    assert_eq!(verify(&secret(), Some(&other), &body), Err(WebhookError::Mismatch));
    let other_secret = WebhookSecret::new(format!("{SECRET}\n")).unwrap();
    assert_eq!(verify(&other_secret, Some(&header), &body), Err(WebhookError::Mismatch));
    // Every single-bit flip of the signature.
    let sd = serde_json::from_slice::<Value>(&body).unwrap()["signedData"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tag = rfc2104_hmac_sha256(SECRET.as_bytes(), sd.as_bytes());
    assert_eq!(format!("sha256={}", hex(&tag)), header);
    for bit in 0..256 {
        tag[bit / 8] ^= 1 << (bit % 8);
        let flipped = format!("sha256={}", hex(&tag));
        assert_eq!(
            verify(&secret(), Some(&flipped), &body),
            Err(WebhookError::Mismatch),
            "bit {bit}"
        );
        tag[bit / 8] ^= 1 << (bit % 8);
    }
    // Tampered signedData: the payload re-encoded with a different installation id.
    let mut outer: Value = serde_json::from_slice(&body).unwrap();
    let mut forged = payload.clone();
    forged["installation"]["id"] = json!("inst-2");
    outer["signedData"] = json!(STANDARD.encode(forged.to_string()));
    assert_eq!(
        verify(&secret(), Some(&header), outer.to_string().as_bytes()),
        Err(WebhookError::Mismatch)
    );
    // One character of signedData changed, or padding removed: the HMAC covers the text as sent.
    for changed in [
        format!("{}A{}", &sd[..10], &sd[11..]),
        sd.trim_end_matches('=').to_owned(),
        format!("{sd} "),
    ] {
        if changed == sd {
            continue;
        }
        outer["signedData"] = json!(changed);
        assert_eq!(
            verify(&secret(), Some(&header), outer.to_string().as_bytes()),
            Err(WebhookError::Mismatch)
        );
    }
}

#[test]
fn body_problems() {
    let header = independent_header(SECRET, "anything");
    let not_utf8 = b"{\"signedData\":\"\xff\"}";
    assert_eq!(verify(&secret(), Some(&header), not_utf8), Err(WebhookError::NotUtf8));
    for body in ["", "signedData=abc&x=1", "<html>502</html>", "{\"signedData\":"] {
        let err = verify(&secret(), Some(&header), body.as_bytes()).unwrap_err();
        assert!(matches!(err, WebhookError::NotJson { .. }), "{body:?}: {err:?}");
    }
    let err = verify(&secret(), Some(&header), b"[\"anything\"]").unwrap_err();
    assert!(
        matches!(&err, WebhookError::NotJson { problem } if problem.contains("array")),
        "{err}"
    );
    for body in [
        r#"{}"#,
        r#"{"event":"installed"}"#,
        r#"{"signedData":42}"#,
        r#"{"signedData":null}"#,
        r#"{"data":{"signedData":"anything"}}"#,
    ] {
        assert_eq!(
            verify(&secret(), Some(&header), body.as_bytes()),
            Err(WebhookError::MissingSignedData),
            "{body}"
        );
    }
    // A body excerpt in NotJson is redacted.
    let token_body = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b not json";
    let err = verify(&secret(), Some(&header), token_body.as_bytes()).unwrap_err();
    assert!(!err.to_string().contains("19c9bd53"), "{err}");
}

#[test]
fn signed_payload_problems() {
    let (body, header) = deliver_raw("not base64!");
    assert_eq!(
        verify(&secret(), Some(&header), &body),
        Err(WebhookError::SignedDataNotBase64)
    );
    let invalid = |json: &[u8], needle: &str| {
        let (body, header) = deliver_raw(&STANDARD.encode(json));
        match verify(&secret(), Some(&header), &body) {
            Err(WebhookError::SignedPayloadInvalid { problem }) => {
                assert!(problem.contains(needle), "{problem:?} lacks {needle:?}")
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(json)),
        }
    };
    invalid(b"\xff\xfe", "UTF-8");
    invalid(b"event=installed", "not JSON");
    invalid(b"[1,2]", "array");
    invalid(br#"{"state":"","installation":{"id":"1"}}"#, "no `event`");
    invalid(br#"{"event":7}"#, "`event`");
    invalid(br#"{"event":"installed","installation":"inst-1"}"#, "`installation`");
    invalid(
        br#"{"event":"installed","installation":{"appId":"1"}}"#,
        "`installation`",
    );
    invalid(br#"{"event":"installed","sender":{"email":"e"}}"#, "`sender`");
    invalid(
        br#"{"event":"x","transaction":{"id":"t","amount":"lots"}}"#,
        "`transaction`",
    );
    invalid(
        br#"{"event":"x","transaction":{"id":"t","createdAt":"yesterday"}}"#,
        "`transaction`",
    );
    invalid(br#"{"event":"x","state":5}"#, "`state`");
}

#[test]
fn verify_request_reads_the_header() {
    let (body, header) = deliver(SECRET, &event_payload("uninstalled"));
    let build = |headers: &[&[u8]]| {
        let mut b = http::Request::post("/hooks/icr");
        for h in headers {
            b = b.header(SIGNATURE_HEADER, http::HeaderValue::from_bytes(h).unwrap());
        }
        b.body(body.clone()).unwrap()
    };
    assert_eq!(
        verify_request(&secret(), &build(&[header.as_bytes()])).unwrap().event,
        EventKind::Uninstalled
    );
    // The header name is case-insensitive on the wire.
    let upper = http::Request::post("/")
        .header("X-ICR-Signature-256", header.as_str())
        .body(&body[..])
        .unwrap();
    assert!(verify_request(&secret(), &upper).is_ok());
    assert_eq!(
        verify_request(&secret(), &build(&[])),
        Err(WebhookError::MissingSignature)
    );
    assert_eq!(
        verify_request(&secret(), &build(&[header.as_bytes(), header.as_bytes()])),
        Err(WebhookError::DuplicateSignature)
    );
    assert_eq!(
        verify_request(&secret(), &build(&[b"sha256=\xe9"])),
        Err(WebhookError::BadSignatureEncoding)
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets stay secret.

#[test]
fn empty_secret_is_refused() {
    assert_eq!(WebhookSecret::new("").unwrap_err(), WebhookError::EmptySecret);
    assert_eq!(WebhookSecret::new(" \n\t").unwrap_err(), WebhookError::EmptySecret);
    let from_secret: Result<WebhookSecret, _> = icr_app_core::SecretString::new("").try_into();
    assert_eq!(from_secret.unwrap_err(), WebhookError::EmptySecret);
    let ok: WebhookSecret = icr_app_core::SecretString::new(SECRET).try_into().unwrap();
    assert_eq!(ok.expose(), SECRET);
}

#[test]
fn no_message_reveals_the_secret_or_signature() {
    let s = secret();
    assert!(!format!("{s:?}").contains(SECRET) && !format!("{s:?}").contains("Zq8v"));
    assert!(!format!("{s}").contains("Zq8v"));
    assert!(!format!("{:?}", Some(&s)).contains("Zq8v"));

    let payload = event_payload("installed");
    let (body, header) = deliver(SECRET, &payload);
    let digest = header.strip_prefix("sha256=").unwrap().to_owned();
    let mut flipped = digest.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = format!("sha256={}", String::from_utf8(flipped).unwrap());
    let secret_in_body = format!(r#"{{"signedData":"{SECRET}"}}"#);
    let (not_b64, not_b64_header) = deliver_raw(&format!("{SECRET}!"));
    let (bad_payload, bad_payload_header) =
        deliver_raw(&STANDARD.encode(format!(r#"{{"event":"x","state":{{"k":"{SECRET}"}}}}"#)));
    let (bad_payload2, bad_payload_header2) =
        deliver_raw(&STANDARD.encode(format!(r#"{{"event":"x","installation":"{SECRET}"}}"#)));
    let errors = vec![
        verify(&s, None, &body).unwrap_err(),
        verify(&s, Some(&digest), &body).unwrap_err(),
        verify(&s, Some(&format!("sha256={}", &digest[..40])), &body).unwrap_err(),
        verify(&s, Some(&flipped), &body).unwrap_err(),
        verify(&s, Some(&header), b"\xff").unwrap_err(),
        verify(&s, Some(&header), format!("{SECRET} {header}").as_bytes()).unwrap_err(),
        verify(&s, Some(&header), b"{}").unwrap_err(),
        verify(&s, Some(&header), secret_in_body.as_bytes()).unwrap_err(),
        verify(&s, Some(&not_b64_header), &not_b64).unwrap_err(),
        verify(&s, Some(&bad_payload_header), &bad_payload).unwrap_err(),
        verify(&s, Some(&bad_payload_header2), &bad_payload).unwrap_err(),
        verify(&s, Some(&bad_payload_header2), &bad_payload2).unwrap_err(),
        WebhookSecret::new("").unwrap_err(),
        verify_request(
            &s,
            &http::Request::post("/")
                .header(SIGNATURE_HEADER, &header)
                .header(SIGNATURE_HEADER, &header)
                .body(&body)
                .unwrap(),
        )
        .unwrap_err(),
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &errors {
        for text in [
            e.to_string(),
            format!("{e:?}"),
            icr_app_core::Error::from(e.clone()).to_string(),
        ] {
            assert!(!text.contains("Zq8v"), "secret in {text}");
            assert!(!text.contains(&digest[..16]), "signature in {text}");
            assert!(!text.contains(&digest[48..]), "signature in {text}");
        }
        assert!(e.to_string().len() > 40, "message too terse: {e}");
        seen.insert(std::mem::discriminant(e));
    }
    // Every variant was produced above.
    assert_eq!(seen.len(), 11, "{errors:#?}");
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 =+/_-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("installed"),
            Just("uninstalled"),
            Just("warehouseTransaction"),
            Just("2024-03-26T08:47:15.356Z")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("event".to_owned()),
                    Just("id".to_owned()),
                    Just("installation".to_owned()),
                    Just("sender".to_owned()),
                    Just("transaction".to_owned()),
                    Just("state".to_owned()),
                    Just("signedData".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The `signedData` and the header's bytes, independently, when a verification succeeded.
fn independently_valid(header: &str, body: &[u8]) -> bool {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(Value::String(sd)) = root.get("signedData") else {
        return false;
    };
    let expected = hex(&rfc2104_hmac_sha256(SECRET.as_bytes(), sd.as_bytes()));
    let header = header.trim();
    match (header.get(..7), header.get(7..)) {
        (Some(prefix), Some(digest)) => {
            prefix.eq_ignore_ascii_case("sha256=") && digest.eq_ignore_ascii_case(&expected)
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics_and_never_verifies(
        body in prop::collection::vec(any::<u8>(), 0..300),
        header in prop::option::of(".{0,80}"),
    ) {
        let result = verify(&secret(), header.as_deref(), &body);
        if result.is_ok() {
            prop_assert!(independently_valid(header.as_deref().unwrap(), &body));
        }
    }

    #[test]
    fn arbitrary_json_bodies_with_forged_headers_fail(
        body in arb_json(),
        digest in "[0-9a-fA-F]{64}",
    ) {
        let header = format!("sha256={digest}");
        let bytes = body.to_string().into_bytes();
        if let Ok(_event) = verify(&secret(), Some(&header), &bytes) {
            prop_assert!(independently_valid(&header, &bytes));
        }
    }

    #[test]
    fn signed_arbitrary_payloads_never_panic(payload in arb_json()) {
        let (body, header) = deliver(SECRET, &payload);
        match verify(&secret(), Some(&header), &body) {
            Ok(event) => {
                prop_assert_eq!(&event.raw, &payload);
                prop_assert_eq!(Some(event.event.as_str()), payload["event"].as_str());
            }
            Err(WebhookError::SignedPayloadInvalid { .. }) => {}
            Err(other) => prop_assert!(false, "a correctly signed delivery failed with {other:?}"),
        }
        // Signed with another secret, it never verifies.
        let (_, forged) = deliver("not-the-secret", &payload);
        prop_assert!(verify(&secret(), Some(&forged), &body).is_err());
    }

    #[test]
    fn mutated_deliveries_only_verify_if_signed_parts_are_intact(
        event in prop_oneof![Just("installed".to_owned()), Just("organizationTransaction".to_owned()), "[a-z]{1,10}"],
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        in_header in any::<bool>(),
    ) {
        let payload = event_payload(&event);
        let (mut body, mut header) = deliver(SECRET, &payload);
        let original: Value = serde_json::from_slice(&body).unwrap();
        if in_header {
            let mut h = header.into_bytes();
            let i = at.index(h.len());
            h[i] = byte;
            header = String::from_utf8_lossy(&h).into_owned();
        } else {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Ok(got) = verify(&secret(), Some(&header), &body) {
            // Only a change outside `signedData` (or a hex case change) can keep it valid.
            let now: Value = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(&now["signedData"], &original["signedData"]);
            prop_assert!(independently_valid(&header, &body));
            prop_assert_eq!(got.raw, payload);
        }
    }
}

#[test]
fn event_is_usable_as_a_value() {
    let (body, header) = deliver(SECRET, &event_payload("installed"));
    let a: WebhookEvent = verify(&secret(), Some(&header), &body).unwrap();
    let b = a.clone();
    assert_eq!(a, b);
    assert!(format!("{a:?}").contains("inst-1"));
}
