//! JWT minting: ours against ring's raw RS256 signature over the same signing input (the floor)
//! and the `jsonwebtoken` crate encoding the same claims with the same key; and a JWT served
//! from the JWT cache.
//!
//! Built with `--features aws-lc-rs`, ours signs with aws-lc-rs, and aws-lc-rs's raw signature
//! joins the floors (criterion and the interleaved rounds). `bash core/benches/providers.sh`
//! runs both builds beside `openssl speed rsa2048` in one go.

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
    g.bench_function(format!("icr-app-core mint ({})", AppKey::CRYPTO_PROVIDER), |b| {
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
    #[cfg(feature = "aws-lc-rs")]
    {
        // The other floor: aws-lc-rs's RSA PKCS#1 SHA-256 over the same input.
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; pair.public_modulus_len()];
        g.bench_function("aws-lc-rs raw signature", |b| {
            b.iter(|| {
                pair.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .unwrap()
            })
        });
    }
    g.bench_function(
        format!("icr-app-core Signer::sign_rs256 ({})", AppKey::CRYPTO_PROVIDER),
        |b| b.iter(|| key.sign_rs256(signing_input.as_bytes()).unwrap()),
    );

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

/// The ratios, measured interleaved: each round times a batch of each contestant (ours, ring's raw
/// signature, aws-lc-rs's raw signature when built with the feature, `jsonwebtoken`), rotating
/// which goes first, so a change in background load hits all alike. Prints the per-JWT times and
/// the median of the per-round ratios (and the lowest and highest).
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

    #[cfg(feature = "aws-lc-rs")]
    let (lc_pair, lc_rng, mut lc_sig) = {
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pem_body(PKCS8_PEM)).unwrap();
        let len = pair.public_modulus_len();
        (pair, aws_lc_rs::rand::SystemRandom::new(), vec![0u8; len])
    };
    let ours = format!("ours ({})", AppKey::CRYPTO_PROVIDER);
    #[cfg_attr(not(feature = "aws-lc-rs"), allow(unused_mut))]
    let mut names: Vec<&str> = vec![&ours, "ring raw", "jsonwebtoken"];
    #[cfg_attr(not(feature = "aws-lc-rs"), allow(unused_mut))]
    let mut contestants: Vec<Box<dyn FnMut()>> = vec![
        Box::new(|| drop(black_box(signer.mint_at(now, ClockOffset::default()).unwrap()))),
        Box::new(|| {
            pair.sign(&RSA_PKCS1_SHA256, &rng, black_box(signing_input.as_bytes()), &mut sig)
                .unwrap()
        }),
        Box::new(|| drop(black_box(jsonwebtoken::encode(&header, &claims, &encoding).unwrap()))),
    ];
    #[cfg(feature = "aws-lc-rs")]
    {
        names.push("aws-lc-rs raw");
        contestants.push(Box::new(|| {
            lc_pair
                .sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &lc_rng,
                    black_box(signing_input.as_bytes()),
                    &mut lc_sig,
                )
                .unwrap()
        }));
    }

    let n = contestants.len();
    let mut totals = vec![Duration::ZERO; n];
    let mut per_round: Vec<Vec<Duration>> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut t = vec![Duration::ZERO; n];
        for k in 0..n {
            let which = (round + k) % n;
            let started = Instant::now();
            for _ in 0..BATCH {
                contestants[which]();
            }
            t[which] = started.elapsed();
        }
        for k in 0..n {
            totals[k] += t[k];
        }
        per_round.push(t);
    }
    drop(contestants);
    let count = (rounds as u32) * BATCH;
    let times: Vec<String> = names
        .iter()
        .zip(&totals)
        .map(|(name, total)| format!("{name} {:.1} µs", total.as_secs_f64() * 1e6 / f64::from(count)))
        .collect();
    println!("jwt/interleaved: per JWT {} ({count} each)", times.join(", "));
    // (numerator, denominator) indexes into `names`.
    let mut pairs = vec![(0, 1), (2, 0)];
    if n == 4 {
        pairs.extend([(0, 3), (3, 1)]);
    }
    for (a, b) in pairs {
        let mut v: Vec<f64> = per_round
            .iter()
            .map(|t| t[a].as_secs_f64() / t[b].as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        println!(
            "jwt/interleaved: {} / {} = {:.4} median of {rounds} rounds (lowest {:.4}, highest {:.4})",
            names[a],
            names[b],
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
