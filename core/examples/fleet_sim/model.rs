//! The simulation's settings (from the command line), its random numbers, and its demand model.

use std::fmt;
use std::time::Duration;

/// What to simulate. Times are in microseconds of simulated time unless named otherwise.
#[derive(Clone, Debug)]
pub struct Settings {
    pub processes: u32,
    pub installations: u32,
    pub hours: f64,
    pub seed: u64,
    /// Calls per process per second (a Poisson stream per process).
    pub rate: f64,
    /// The exponent of the Zipf law that picks the installation of a call.
    pub zipf: f64,
    /// Where to draw the plot, if anywhere.
    pub plot: Option<String>,
    /// Whether the failover and the outage happen.
    pub incidents: bool,
    /// When the failover is armed, in seconds (default: a third of the run): it strikes half a
    /// second after the next token is put, so that the promoted replica lacks that token.
    pub failover_at_s: f64,
    /// How long commands fail during the failover, in seconds.
    pub failover_s: f64,
    /// How much of what was written before the failover is lost, in seconds.
    pub failover_loss_s: f64,
    /// When the outage starts, in seconds (default: two thirds of the run).
    pub outage_at_s: f64,
    /// How long the outage lasts, in seconds.
    pub outage_s: f64,
}

pub const USAGE: &str = "usage: fleet_sim [--processes N] [--installations N] [--hours H] [--seed N]
                 [--rate CALLS_PER_PROCESS_PER_SECOND] [--zipf EXPONENT] [--plot FILE.svg]
                 [--no-incidents] [--failover-at SECONDS] [--failover SECONDS]
                 [--failover-loss SECONDS] [--outage-at SECONDS] [--outage SECONDS]

Simulates a fleet of processes, each with its own icr_app_core::App and a shared store, against a
simulated registry (2 h tokens) and a simulated Redis (with a failover and an outage) on a
simulated clock, and prints one JSON line. Defaults: 10000 processes, 1000 installations, 24 hours,
seed 1, rate 1/60 (one call a minute per process), zipf 1.0, the failover (3 s of failing commands,
the last 1 s of writes lost) half a second after the first token put after a third of the run,
the outage (60 s) at two thirds.";

/// A command-line mistake, said with what to do instead.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{USAGE}", self.0)
    }
}

impl Settings {
    /// The defaults, for `hours` hours.
    pub fn new(processes: u32, installations: u32, hours: f64, seed: u64) -> Self {
        let mut settings = Self {
            processes,
            installations,
            hours,
            seed,
            rate: 1.0 / 60.0,
            zipf: 1.0,
            plot: None,
            incidents: true,
            failover_at_s: 0.0,
            failover_s: 3.0,
            failover_loss_s: 1.0,
            outage_at_s: 0.0,
            outage_s: 60.0,
        };
        settings.place_incidents();
        settings
    }

    /// The failover at a third of the run (armed then: it strikes half a second after the next
    /// token is put), the outage at two thirds.
    fn place_incidents(&mut self) {
        let run = self.hours * 3600.0;
        self.failover_at_s = (run / 3.0).round();
        self.outage_at_s = (run * 2.0 / 3.0).round();
    }

    /// The settings the arguments (without the program's name) give.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, UsageError> {
        let mut s = Self::new(10_000, 1_000, 24.0, 1);
        let (mut failover_at, mut outage_at) = (None, None);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--no-incidents" {
                s.incidents = false;
                continue;
            }
            let mut value = || args.next().ok_or_else(|| UsageError(format!("{flag} needs a value")));
            match flag.as_str() {
                "--processes" => s.processes = number(&flag, &value()?, 1.0, 1e6)? as u32,
                "--installations" => s.installations = number(&flag, &value()?, 1.0, 1e6)? as u32,
                "--hours" => s.hours = number(&flag, &value()?, 0.01, 24.0 * 365.0)?,
                "--seed" => {
                    let v = value()?;
                    s.seed = v
                        .parse()
                        .map_err(|_| UsageError(format!("--seed takes a whole number from 0 to 2^64-1, not `{v}`")))?;
                }
                "--rate" => s.rate = number(&flag, &value()?, 1e-6, 1e3)?,
                "--zipf" => s.zipf = number(&flag, &value()?, 0.0, 10.0)?,
                "--plot" => s.plot = Some(value()?),
                "--failover-at" => failover_at = Some(number(&flag, &value()?, 0.0, 1e9)?),
                "--failover" => s.failover_s = number(&flag, &value()?, 0.0, 3600.0)?,
                "--failover-loss" => s.failover_loss_s = number(&flag, &value()?, 0.0, 3600.0)?,
                "--outage-at" => outage_at = Some(number(&flag, &value()?, 0.0, 1e9)?),
                "--outage" => s.outage_s = number(&flag, &value()?, 0.0, 24.0 * 3600.0)?,
                _ => return Err(UsageError(format!("unknown argument `{flag}`"))),
            }
        }
        s.place_incidents();
        s.failover_at_s = failover_at.unwrap_or(s.failover_at_s);
        s.outage_at_s = outage_at.unwrap_or(s.outage_at_s);
        Ok(s)
    }

    /// The simulated run's length.
    pub fn run_us(&self) -> u64 {
        (self.hours * 3600.0 * 1e6) as u64
    }
}

/// `value` as a number from `min` to `max`, or the error that says so.
fn number(flag: &str, value: &str, min: f64, max: f64) -> Result<f64, UsageError> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && (min..=max).contains(&n) => Ok(n),
        _ => Err(UsageError(format!(
            "{flag} takes a number from {min} to {max}, not `{value}`"
        ))),
    }
}

/// How long after it was minted any process may first refresh one of the registry's tokens:
/// `expiresAt - max(refresh_margin, refresh_fraction * lifetime)` (never before half its life),
/// with the cache's default settings, brought forward by the most the cache spreads refreshes
/// (a fifth of that margin): 105.6 minutes for a 2-hour token (each process refreshes at a
/// moment of its own between 105.6 and 108 minutes).
pub fn refresh_after() -> Duration {
    let config = icr_app_core::CacheConfig::default();
    let life = Duration::from_secs(crate::world::TOKEN_LIFETIME_S as u64);
    let margin = config
        .refresh_margin
        .max(life.mul_f64(config.refresh_fraction))
        .min(life / 2);
    let spread = margin / 5;
    life.saturating_sub(margin + spread).max(life / 2)
}

/// A small deterministic PRNG (xorshift64* seeded through splitmix64): the same seed, the same
/// run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with mean `mean`.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// The Zipf law over `n` installations: installation `k` (from 0) is picked with probability
/// proportional to `1 / (k + 1)^s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / f64::from(k).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self { cdf }
    }

    /// The probability of installation `k`.
    pub fn p(&self, k: usize) -> f64 {
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c <= u).min(self.cdf.len() - 1)
    }
}
