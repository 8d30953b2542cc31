//! JWT minting: ours against ring's raw RS256 signature over the same signing input (the floor)
//! and the `jsonwebtoken` crate encoding the same claims with the same key; and a JWT served
//! from the JWT cache.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The ratios, measured interleaved: each round times a batch of ours, of ring's raw signature
/// and of `jsonwebtoken`, rotating which goes first, so a change in background load hits all
/// three alike. Prints the median of the per-round ratios (and the lowest and highest).
fn ratios(_: &mut Criterion) {
    // `cargo test --benches` runs this once, unoptimised, without `--bench`: two rounds then.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if full { 60 } else { 2 };
    const BATCH: u32 = 20;
    let key = AppKey::from_pem(PKCS8_PEM).unwrap();
    let signer = JwtSigner::new(AppId::new(APP_ID).unwrap(), Arc::new(key));
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    let jwt = signer.mint_at(now, ClockOffset::default()).unwrap();
    let signing_input = jwt.token().expose().rsplit_once('.').unwrap().0.to_owned();
    let pair = RsaKeyPair::from_pkcs8(&pem_body(PKCS8_PEM)).unwrap();
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; pair.public().modulus_len()];
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(PKCS1_PEM.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let claims = serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": APP_ID, "alg": "RS256"});

    let mut time = |which: usize| {
        let started = Instant::now();
        for _ in 0..BATCH {
            match which {
                0 => drop(black_box(signer.mint_at(now, ClockOffset::default()).unwrap())),
                1 => pair
                    .sign(&RSA_PKCS1_SHA256, &rng, black_box(signing_input.as_bytes()), &mut sig)
                    .unwrap(),
                _ => drop(black_box(jsonwebtoken::encode(&header, &claims, &encoding).unwrap())),
            }
        }
        started.elapsed()
    };
    let (mut vs_ring, mut vs_jwt) = (Vec::new(), Vec::new());
    let mut totals = [Duration::ZERO; 3];
    for round in 0..rounds {
        let mut t = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            t[which] = time(which);
        }
        for k in 0..3 {
            totals[k] += t[k];
        }
        vs_ring.push(t[0].as_secs_f64() / t[1].as_secs_f64());
        vs_jwt.push(t[2].as_secs_f64() / t[0].as_secs_f64());
    }
    let n = (rounds as u32) * BATCH;
    println!(
        "jwt/interleaved: per JWT ours {:.1} µs, ring raw {:.1} µs, jsonwebtoken {:.1} µs ({n} each)",
        totals[0].as_secs_f64() * 1e6 / f64::from(n),
        totals[1].as_secs_f64() * 1e6 / f64::from(n),
        totals[2].as_secs_f64() * 1e6 / f64::from(n),
    );
    for (name, mut v) in [("ours / ring raw", vs_ring), ("jsonwebtoken / ours", vs_jwt)] {
        v.sort_by(f64::total_cmp);
        println!(
            "jwt/interleaved: {name} = {:.4} median of {rounds} rounds (lowest {:.4}, highest {:.4})",
            v[rounds / 2],
            v[0],
            v[rounds - 1]
        );
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

criterion_group!(benches, bench, ratios);
criterion_main!(benches);
