//! `fleet-worker`: one process of a fleet, for fleet tests and benchmarks
//! (tests/tests/fleet.rs, `fleet-bench`). A blocking client with its own cache and, with
//! `--redis`, the shared store (`Client::builder(app).store(RedisStore::connect(url)?...)`);
//! T threads each get a token for every installation, in an order of their own.
//!
//! ```text
//! fleet-worker --base-url URL --app-id ID --key PATH [--redis URL] [--threads T]
//!              [--lease-ttl-ms MS] [--retry-after-failure-ms MS] [--store-timeout-ms MS]
//!              [--min-remaining-ms MS] [--refresh-margin-ms MS] [--organizations] [--serve]
//!              [INSTALLATION...]
//! ```
//!
//! With `--organizations`, the ids given (on the command line and in commands) are organizations,
//! and each thread gets each organization's token (`Client::organization_token`).
//!
//! Without `--serve`: one round over the installations given, then the stats, then exits (status
//! 1 if any call failed or handed out an expired token). With `--serve`: prints `ready` once the
//! client is built (nothing is fetched before a command), then runs one command per stdin line:
//!
//! | command | what |
//! |---|---|
//! | `get [ID...]` | one round: every thread gets every installation (default: those on the command line) once |
//! | `loop MS [ID...]` | every thread gets them over and over for MS milliseconds; prints `looping` first |
//! | `stats` | the client's stats |
//! | `quit` | exits (so does the end of stdin) |
//!
//! A round prints, per installation and distinct token it handed out, `token ID SHA256` (the
//! SHA-256 of the token in hex, never the token), `error ID MESSAGE` per failed call, then
//! `done gets=N errors=N expired=N min_left_ms=N`: `expired` counts tokens handed out at or after
//! their `expiresAt` (on this machine's clock, which the registry on loopback shares), and
//! `min_left_ms` is the least life a handed-out token had. `stats` prints
//! `stats mints=N shared_hits=N shared_fallbacks=N hits=N misses=N waits=N failures=N lookups=N
//! shared_lookups=N`.

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use icr_app_core::{App, AppKey, CacheConfig, InstallationId, OrganizationId, TokenScope};
use icr_app_redis::RedisStore;
use icr_app_ureq::Client;

#[derive(Default)]
struct Options {
    base_url: String,
    app_id: String,
    key: String,
    redis: Option<String>,
    threads: usize,
    lease_ttl: Option<Duration>,
    retry_after_failure: Option<Duration>,
    store_timeout: Option<Duration>,
    min_remaining: Option<Duration>,
    refresh_margin: Option<Duration>,
    organizations: bool,
    serve: bool,
    installations: Vec<String>,
}

/// What one round saw.
#[derive(Default)]
struct Round {
    tokens: BTreeSet<(String, String)>,
    errors: Vec<(String, String)>,
    gets: u64,
    expired: u64,
    min_left_ms: i64,
}

fn main() {
    let options = match parse_args(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("fleet-worker: {message}");
            std::process::exit(2);
        }
    };
    let client = match build_client(&options) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("fleet-worker: {message}");
            std::process::exit(2);
        }
    };
    if !options.serve {
        let round = run(&client, &options, &options.installations, None);
        let ok = round.errors.is_empty() && round.expired == 0;
        print_round(&round);
        print_stats(&client);
        std::process::exit(if ok { 0 } else { 1 });
    }
    say("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let ids = |rest: &[&str]| -> Vec<String> {
            if rest.is_empty() {
                options.installations.clone()
            } else {
                rest.iter().map(|s| (*s).to_owned()).collect()
            }
        };
        match words.as_slice() {
            ["get", rest @ ..] => print_round(&run(&client, &options, &ids(rest), None)),
            ["loop", ms, rest @ ..] => match ms.parse::<u64>() {
                Ok(ms) => {
                    let round = run(&client, &options, &ids(rest), Some(Duration::from_millis(ms)));
                    print_round(&round);
                }
                Err(_) => say("error loop MS [ID...]"),
            },
            ["stats"] => print_stats(&client),
            ["quit"] => break,
            _ => say(&format!("error unknown command: {line}")),
        }
    }
}

fn build_client(options: &Options) -> Result<Client, String> {
    let pem = std::fs::read_to_string(&options.key).map_err(|e| format!("cannot read {}: {e}", options.key))?;
    let key = AppKey::from_pem(&pem).map_err(|e| e.to_string())?;
    let mut cache = CacheConfig::default();
    if let Some(min) = options.min_remaining {
        cache.min_remaining = min;
    }
    if let Some(margin) = options.refresh_margin {
        cache.refresh_margin = margin;
    }
    let app = App::builder(options.app_id.clone(), key)
        .base_url(options.base_url.clone())
        .cache(cache)
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = Client::builder(app);
    if let Some(url) = &options.redis {
        let mut store = RedisStore::connect(url).map_err(|e| e.to_string())?;
        if let Some(ttl) = options.lease_ttl {
            store = store.lease_ttl(ttl);
        }
        if let Some(pause) = options.retry_after_failure {
            store = store.retry_after_failure(pause);
        }
        if let Some(timeout) = options.store_timeout {
            store = store.timeout(timeout);
        }
        builder = builder.store(store);
    }
    builder.build().map_err(|e| e.to_string())
}

/// `threads` threads each get every installation (or organization) (in an order of their own),
/// once, or over and over until `duration` has passed.
fn run(client: &Client, options: &Options, installations: &[String], duration: Option<Duration>) -> Round {
    let threads = options.threads;
    let ids: Vec<Result<TokenScope, String>> = installations
        .iter()
        .map(|id| {
            if options.organizations {
                OrganizationId::new(id.clone()).map(TokenScope::Organization)
            } else {
                InstallationId::new(id.clone()).map(TokenScope::Installation)
            }
            .map_err(|e| e.to_string())
        })
        .collect();
    let round = Mutex::new(Round {
        min_left_ms: i64::MAX,
        ..Round::default()
    });
    if duration.is_some() {
        say("looping");
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ids, round) = (&ids, &round);
            s.spawn(move || {
                let mut rng = Shuffle::new(t as u64);
                let mut mine = Round {
                    min_left_ms: i64::MAX,
                    ..Round::default()
                };
                loop {
                    let mut order: Vec<usize> = (0..ids.len()).collect();
                    rng.shuffle(&mut order);
                    for i in order {
                        let name = installations[i].clone();
                        mine.gets += 1;
                        let id = match &ids[i] {
                            Ok(id) => id,
                            Err(e) => {
                                mine.errors.push((name, e.clone()));
                                continue;
                            }
                        };
                        match client.token(id, None) {
                            Ok(token) => {
                                let left = token.access_token().expires_at.unix_millis() - now_ms();
                                if left <= 0 {
                                    mine.expired += 1;
                                }
                                mine.min_left_ms = mine.min_left_ms.min(left);
                                mine.tokens.insert((name, sha256_hex(token.secret().expose())));
                            }
                            Err(e) => mine.errors.push((name, e.to_string())),
                        }
                    }
                    if duration.is_none_or(|d| started.elapsed() >= d) {
                        break;
                    }
                    // Callers doing some work between calls (and the machine's two cores left
                    // to the others).
                    std::thread::sleep(Duration::from_millis(2));
                }
                let mut round = round.lock().unwrap();
                round.tokens.extend(mine.tokens);
                round.errors.extend(mine.errors);
                round.gets += mine.gets;
                round.expired += mine.expired;
                round.min_left_ms = round.min_left_ms.min(mine.min_left_ms);
            });
        }
    });
    round.into_inner().unwrap()
}

fn print_round(round: &Round) {
    let mut out = std::io::stdout().lock();
    for (id, sha) in &round.tokens {
        writeln!(out, "token {id} {sha}").unwrap();
    }
    for (id, message) in &round.errors {
        writeln!(out, "error {id} {}", message.replace('\n', " ")).unwrap();
    }
    let min_left_ms = if round.min_left_ms == i64::MAX {
        -1
    } else {
        round.min_left_ms
    };
    writeln!(
        out,
        "done gets={} errors={} expired={} min_left_ms={min_left_ms}",
        round.gets,
        round.errors.len(),
        round.expired
    )
    .unwrap();
    out.flush().unwrap();
}

fn print_stats(client: &Client) {
    let s = client.stats();
    say(&format!(
        "stats mints={} shared_hits={} shared_fallbacks={} hits={} misses={} waits={} failures={} lookups={} shared_lookups={}",
        s.mints,
        s.shared_hits,
        s.shared_fallbacks,
        s.hits,
        s.misses,
        s.waits,
        s.failures.values().sum::<u64>(),
        s.lookups,
        s.shared_lookups
    ));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn sha256_hex(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small generator for the threads' orders (xorshift, seeded by the process and the thread).
struct Shuffle(u64);

impl Shuffle {
    fn new(thread: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self((u64::from(std::process::id()) << 32 ^ u64::from(nanos) ^ thread.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        threads: 16,
        ..Options::default()
    };
    let mut args = args.into_iter();
    let ms = |value: Option<String>, flag: &str| -> Result<Duration, String> {
        value
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{flag} takes milliseconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--base-url" => options.base_url = args.next().ok_or("--base-url URL")?,
            "--app-id" => options.app_id = args.next().ok_or("--app-id ID")?,
            "--key" => options.key = args.next().ok_or("--key PATH")?,
            "--redis" => options.redis = Some(args.next().ok_or("--redis URL")?),
            "--threads" => {
                options.threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|t| *t > 0)
                    .ok_or("--threads takes a positive number")?;
            }
            "--lease-ttl-ms" => options.lease_ttl = Some(ms(args.next(), &arg)?),
            "--retry-after-failure-ms" => options.retry_after_failure = Some(ms(args.next(), &arg)?),
            "--store-timeout-ms" => options.store_timeout = Some(ms(args.next(), &arg)?),
            "--min-remaining-ms" => options.min_remaining = Some(ms(args.next(), &arg)?),
            "--refresh-margin-ms" => options.refresh_margin = Some(ms(args.next(), &arg)?),
            "--serve" => options.serve = true,
            "--organizations" => options.organizations = true,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => options.installations.push(arg),
        }
    }
    if options.base_url.is_empty() || options.app_id.is_empty() || options.key.is_empty() {
        return Err("--base-url, --app-id and --key are required".to_owned());
    }
    Ok(options)
}
