//! JWT minting: ours against ring's raw RS256 signature over the same signing input (the floor)
//! and the `jsonwebtoken` crate encoding the same claims with the same key; and a JWT served
//! from the JWT cache.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use icr_app_core::{AppId, AppKey, ClockOffset, JwtSigner, Signer, Timestamp};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

const PKCS8_PEM: &str = include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem");
const PKCS1_PEM: &str = include_str!("../tests/fixtures/keys/rsa2048-pkcs1.pem");
const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

fn bench(c: &mut Criterion) {
    let key = AppKey::from_pem(PKCS8_PEM).unwrap();
    let signer = JwtSigner::new(AppId::new(APP_ID).unwrap(), Arc::new(key.clone()));
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    let jwt = signer.mint_at(now, ClockOffset::default()).unwrap();
    let signing_input = jwt.token().expose().rsplit_once('.').unwrap().0.to_owned();

    let mut g = c.benchmark_group("jwt");
    g.bench_function("icr-app-core mint", |b| {
        b.iter(|| signer.mint_at(now, ClockOffset::default()).unwrap())
    });

    // The floor: ring's RSA PKCS#1 SHA-256 over the same signing input, nothing else.
    let der = pem_body(PKCS8_PEM);
    let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; pair.public().modulus_len()];
    g.bench_function("ring raw signature", |b| {
        b.iter(|| {
            pair.sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
                .unwrap()
        })
    });
    g.bench_function("icr-app-core Signer::sign_rs256", |b| {
        b.iter(|| key.sign_rs256(signing_input.as_bytes()).unwrap())
    });

    // jsonwebtoken with the same claims and key.
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(PKCS1_PEM.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let claims = serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": APP_ID, "alg": "RS256"});
    g.bench_function("jsonwebtoken encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, &claims, &encoding).unwrap())
    });

    // A JWT served from the cache.
    let mut cached = JwtSigner::new(AppId::new(APP_ID).unwrap(), Arc::new(key.clone()));
    cached.jwt(now, ClockOffset::default()).unwrap();
    g.bench_function("icr-app-core cached jwt", |b| {
        b.iter(|| cached.jwt(now, ClockOffset::default()).unwrap())
    });
    g.finish();
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
