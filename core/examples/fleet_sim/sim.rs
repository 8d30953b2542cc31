//! The discrete-event loop: a priority queue of (time, sequence, event), processes woken only
//! when they call or when something they wait for arrives, each process driving the core's
//! [`GetToken`] operations through their steps exactly as a driver does.

use http::Response;
use icr_app_core::{
    App, AppKey, CacheConfig, Error, GetToken, InstallationId, Operation, RequestId, Step, StoreCommand, StoreReply,
    StoreSettings, Timestamp, TokenScope, TransportErrorKind,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::model::{Rng, Settings, Zipf};
use crate::world::{Redis, Registry, TOKEN_LIFETIME_S};

/// Wall-clock milliseconds of simulated time 0 (1 January 2027, 00:00 UTC).
pub const EPOCH_MS: i64 = 1_798_761_600_000;
const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";
const KEY: &str = include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem");

/// Redis round trip: 200 µs plus an exponential part of mean 300 µs (a node in the same zone).
const REDIS_RTT_BASE_US: f64 = 200.0;
const REDIS_RTT_MEAN_US: f64 = 300.0;
/// The store driver's timeout (`icr_app_redis::DEFAULT_TIMEOUT`): a failing-over primary
/// answers nothing, so its commands fail after it.
const REDIS_TIMEOUT_US: u64 = 300_000;
/// The registry's answer to a mint: 80 ms plus an exponential part of mean 70 ms.
const REGISTRY_BASE_US: f64 = 80_000.0;
const REGISTRY_MEAN_US: f64 = 70_000.0;

/// What happens at a moment.
enum What {
    /// Process `p` makes a call.
    Call(u32),
    /// Poll operation `slot` of process `p` again, if it is still waiting for wake-up `generation`.
    Resume { p: u32, slot: u32, generation: u32 },
    /// A store command reaches Redis.
    StoreExec {
        p: u32,
        slot: u32,
        id: RequestId,
        command: Box<StoreCommand>,
        back_us: u64,
    },
    /// A store reply (or failure) reaches the process.
    StoreBack {
        p: u32,
        slot: u32,
        id: RequestId,
        reply: Box<Result<StoreReply, Error>>,
    },
    /// The registry's response reaches the process.
    HttpBack {
        p: u32,
        slot: u32,
        id: RequestId,
        response: Box<Response<Vec<u8>>>,
    },
    /// The Redis primary fails over (losing the last writes).
    FailOver,
}

struct Event {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One call in progress.
struct Op {
    get: GetToken,
    /// Which wake-up it waits for; an older one is ignored.
    generation: u32,
    /// Whether it waits for a change of `app.changes()` (a [`Step::Wait`]).
    waiting: bool,
}

/// One process: its own `App` (its own cache, its own lease owner id) and its calls in progress.
struct Process {
    app: App,
    ops: Vec<Option<Op>>,
    free: Vec<u32>,
}

/// Counts per second and per minute of simulated time.
#[derive(Debug, Default)]
pub struct Series {
    pub store_per_s: Vec<u32>,
    pub registry_per_s: Vec<u32>,
    pub mints_per_min: Vec<u32>,
}

impl Series {
    fn bump(v: &mut [u32], i: u64) {
        if let Some(n) = v.get_mut(i as usize) {
            *n += 1;
        }
    }
}

/// What the run measured.
#[derive(Debug, Default)]
pub struct Tally {
    pub calls: u64,
    pub failed_calls: u64,
    pub expired_tokens_served: u64,
    /// Tokens handed out with less than the cache's minimum life (60 s) left.
    pub under_min_life_served: u64,
    pub store_commands: u64,
    pub store_failures: u64,
    pub registry_requests: u64,
    /// Refresh windows: per installation, a mint opens one (until any process may first refresh
    /// its token, 14.4 minutes before its `expiresAt`) unless it falls in the window already open.
    pub refresh_windows: u64,
    /// What one process making every call of the fleet (an ideal single cache with the core's
    /// refresh policy) would mint.
    pub single_process_mints: u64,
    /// Mints during the outage and the pause after it (`retry_after_failure`, 5 s) in which
    /// processes still mint alone.
    pub mints_in_outage: u64,
    /// Mints during the failover and the pause after it.
    pub mints_in_failover: u64,
    pub writes_lost_in_failover: u64,
    pub redis_keys_at_end: u64,
    /// Summed over every process's `App::stats()`.
    pub hits: u64,
    pub misses: u64,
    pub shared_hits: u64,
    pub shared_fallbacks: u64,
    pub core_mints: u64,
}

/// The whole simulated world.
pub struct Sim {
    settings: Settings,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    now: u64,
    rng: Rng,
    zipf: Zipf,
    installations: Vec<TokenScope>,
    processes: Vec<Process>,
    redis: Redis,
    registry: Registry,
    /// Per installation, when the ideal single cache's token is due for refresh (µs).
    oracle_refresh_us: Vec<Option<u64>>,
    /// Per installation, when the refresh window the fleet's last counted mint opened ends (µs).
    window_end_us: Vec<Option<u64>>,
    /// When the failover struck (µs), once it has.
    pub failover_start_us: Option<u64>,
    refresh_after_us: u64,
    pub tally: Tally,
    pub series: Series,
}

/// `t` (simulated µs) as the core's time.
fn ts(t: u64) -> Timestamp {
    Timestamp::from_unix_millis(EPOCH_MS + (t / 1000) as i64)
}

/// The core's time `at` as simulated µs, never before `now`.
fn us(at: Timestamp, now: u64) -> u64 {
    let ms = at.unix_millis() - EPOCH_MS;
    (u64::try_from(ms).unwrap_or(0) * 1000).max(now)
}

impl Sim {
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let key = AppKey::from_pem(KEY)?;
        let mut rng = Rng::new(settings.seed);
        let mut processes = Vec::with_capacity(settings.processes as usize);
        for _ in 0..settings.processes {
            let mut app = App::builder(APP_ID, key.clone())
                .cache(CacheConfig::default())
                .seed(rng.next_u64())
                .build()?;
            app.attach_store(StoreSettings::default(), rng.next_u64())?;
            processes.push(Process {
                app,
                ops: Vec::new(),
                free: Vec::new(),
            });
        }
        let installations = (0..settings.installations)
            .map(|i| InstallationId::new(format!("inst-{i:05}")).map(TokenScope::Installation))
            .collect::<Result<Vec<_>, _>>()?;
        let run_s = settings.run_us().div_ceil(1_000_000) as usize;
        let series = Series {
            store_per_s: vec![0; run_s],
            registry_per_s: vec![0; run_s],
            mints_per_min: vec![0; run_s.div_ceil(60)],
        };
        let refresh_after_us = crate::model::refresh_after().as_micros() as u64;
        let loss_us = if settings.incidents {
            (settings.failover_loss_s * 1e6) as u64
        } else {
            0
        };
        Ok(Self {
            zipf: Zipf::new(settings.installations, settings.zipf),
            oracle_refresh_us: vec![None; installations.len()],
            window_end_us: vec![None; installations.len()],
            failover_start_us: None,
            installations,
            processes,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            rng,
            redis: Redis::new(loss_us),
            registry: Registry::default(),
            refresh_after_us,
            tally: Tally::default(),
            series,
            settings,
        })
    }

    fn at(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn next_call(&mut self, p: u32) {
        let gap = self.rng.exp(1e6 / self.settings.rate) as u64;
        self.at(self.now + gap.max(1), What::Call(p));
    }

    fn in_outage(&self, t: u64) -> bool {
        let s = &self.settings;
        let start = (s.outage_at_s * 1e6) as u64;
        s.incidents && t >= start && t < start + (s.outage_s * 1e6) as u64
    }

    fn in_failover(&self, t: u64) -> bool {
        let len = (self.settings.failover_s * 1e6) as u64;
        self.failover_start_us
            .is_some_and(|start| t >= start && t < start + len)
    }

    /// Whether the failover is armed and `command`, run at `now`, sets it off: the primary dies
    /// half a second after a token was put.
    fn sets_off_failover(&self, command: &StoreCommand) -> bool {
        let s = &self.settings;
        s.incidents
            && self.failover_start_us.is_none()
            && self.now >= (s.failover_at_s * 1e6) as u64
            && matches!(command, StoreCommand::Put { .. })
    }

    /// Runs the whole simulated time.
    pub fn run(&mut self) {
        for p in 0..self.settings.processes {
            self.next_call(p);
        }
        let end = self.settings.run_us();
        while let Some(Reverse(event)) = self.queue.pop() {
            if event.at >= end {
                break;
            }
            self.now = event.at;
            match event.what {
                What::Call(p) => self.call(p),
                What::Resume { p, slot, generation } => {
                    let current = self.op(p, slot).map(|op| op.generation);
                    if current == Some(generation) {
                        if let Some(op) = self.op(p, slot) {
                            op.waiting = false;
                        }
                        self.drive(p, slot);
                    }
                }
                What::StoreExec {
                    p,
                    slot,
                    id,
                    command,
                    back_us,
                } => {
                    let reply = if self.in_failover(self.now) {
                        self.tally.store_failures += 1;
                        let error = Error::transport(
                            TransportErrorKind::Timeout,
                            "Redis did not answer within 300 ms (a failover)",
                        );
                        let at = self.now + REDIS_TIMEOUT_US.saturating_sub(back_us);
                        self.at(
                            at,
                            What::StoreBack {
                                p,
                                slot,
                                id,
                                reply: Box::new(Err(error)),
                            },
                        );
                        continue;
                    } else {
                        if self.sets_off_failover(&command) {
                            let at = self.now + 500_000;
                            self.failover_start_us = Some(at);
                            self.at(at, What::FailOver);
                        }
                        Ok(self.redis.run(&command, self.now))
                    };
                    self.at(
                        self.now + back_us,
                        What::StoreBack {
                            p,
                            slot,
                            id,
                            reply: Box::new(reply),
                        },
                    );
                }
                What::StoreBack { p, slot, id, reply } => {
                    let now = ts(self.now);
                    let proc = &mut self.processes[p as usize];
                    if let Some(op) = proc.ops[slot as usize].as_mut() {
                        op.get.handle_store(&mut proc.app, id, *reply, now);
                        self.reported(p, slot);
                    }
                }
                What::HttpBack { p, slot, id, response } => {
                    let now = ts(self.now);
                    let proc = &mut self.processes[p as usize];
                    if let Some(op) = proc.ops[slot as usize].as_mut() {
                        op.get.handle_response(&mut proc.app, id, *response, now);
                        self.reported(p, slot);
                    }
                }
                What::FailOver => {
                    self.tally.writes_lost_in_failover += self.redis.fail_over(self.now) as u64;
                }
            }
        }
        self.tally.redis_keys_at_end = self.redis.len() as u64;
        for proc in &self.processes {
            let stats = proc.app.stats();
            self.tally.hits += stats.hits;
            self.tally.misses += stats.misses;
            self.tally.shared_hits += stats.shared_hits;
            self.tally.shared_fallbacks += stats.shared_fallbacks;
            self.tally.core_mints += stats.mints;
        }
    }

    pub fn registry_mints(&self) -> u64 {
        self.registry.mints()
    }

    fn op(&mut self, p: u32, slot: u32) -> Option<&mut Op> {
        self.processes[p as usize].ops.get_mut(slot as usize)?.as_mut()
    }

    /// Process `p` calls for an installation drawn from the demand law.
    fn call(&mut self, p: u32) {
        self.next_call(p);
        self.tally.calls += 1;
        let i = self.zipf.sample(&mut self.rng);
        if self.oracle_refresh_us[i].is_none_or(|due| self.now >= due) {
            self.tally.single_process_mints += 1;
            self.oracle_refresh_us[i] = Some(self.now + self.refresh_after_us);
        }
        let op = Op {
            get: GetToken::new(self.installations[i].clone(), None),
            generation: 0,
            waiting: false,
        };
        let proc = &mut self.processes[p as usize];
        let slot = match proc.free.pop() {
            Some(slot) => {
                proc.ops[slot as usize] = Some(op);
                slot
            }
            None => {
                proc.ops.push(Some(op));
                (proc.ops.len() - 1) as u32
            }
        };
        self.drive(p, slot);
    }

    /// Operation `slot` of `p` was reported to: every operation of `p` waiting for a change
    /// polls again now, and so does this one.
    fn reported(&mut self, p: u32, slot: u32) {
        let now = self.now;
        let mut wake = Vec::new();
        for (i, op) in self.processes[p as usize].ops.iter_mut().enumerate() {
            if let Some(op) = op
                && op.waiting
                && i as u32 != slot
            {
                op.waiting = false;
                op.generation += 1;
                wake.push((i as u32, op.generation));
            }
        }
        for (i, generation) in wake {
            self.at(now, What::Resume { p, slot: i, generation });
        }
        self.drive(p, slot);
    }

    /// Counts a mint in its installation's refresh window, or opens a new window.
    fn count_mint(&mut self, request: &http::Request<Vec<u8>>) {
        let path = request.uri().path();
        let Some(i) = path
            .split('/')
            .find_map(|segment| segment.strip_prefix("inst-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        if self.window_end_us[i].is_none_or(|end| self.now >= end) {
            self.tally.refresh_windows += 1;
            // The earliest a process may refresh the token: its `expiresAt` (whole seconds, so
            // up to a second before the mint plus 2 hours) less the 12-minute margin and the
            // cache's spread (a fifth of it).
            let margin_us = (TOKEN_LIFETIME_S as u64) * 1_000_000 - self.refresh_after_us;
            let expires_us = self.registry.last_expiry().unwrap_or(self.now);
            self.window_end_us[i] = Some(expires_us.saturating_sub(margin_us));
        }
    }

    /// Polls operation `slot` of `p` and performs its step, until it waits for something.
    fn drive(&mut self, p: u32, slot: u32) {
        loop {
            let now = self.now;
            let proc = &mut self.processes[p as usize];
            let Some(op) = proc.ops[slot as usize].as_mut() else {
                return;
            };
            let step = op.get.poll(&mut proc.app, ts(now));
            match step {
                Step::Send { id, request } => {
                    self.tally.registry_requests += 1;
                    Series::bump(&mut self.series.registry_per_s, now / 1_000_000);
                    let response = self.registry.answer(&request, now, EPOCH_MS);
                    if response.status() == 200 {
                        self.count_mint(&request);
                        Series::bump(&mut self.series.mints_per_min, now / 60_000_000);
                        let after = StoreSettings::default().retry_after_failure.as_micros() as u64;
                        if self.in_outage(now.saturating_sub(after)) || self.in_outage(now) {
                            self.tally.mints_in_outage += 1;
                        }
                        if self.in_failover(now.saturating_sub(after)) || self.in_failover(now) {
                            self.tally.mints_in_failover += 1;
                        }
                    }
                    let delay = REGISTRY_BASE_US + self.rng.exp(REGISTRY_MEAN_US);
                    let response = Box::new(response);
                    self.at(now + delay as u64, What::HttpBack { p, slot, id, response });
                    return;
                }
                Step::Store { id, command } => {
                    self.tally.store_commands += 1;
                    Series::bump(&mut self.series.store_per_s, now / 1_000_000);
                    let rtt = (REDIS_RTT_BASE_US + self.rng.exp(REDIS_RTT_MEAN_US)) as u64;
                    if self.in_outage(now) {
                        // Nothing listens: refused at once.
                        self.tally.store_failures += 1;
                        let error =
                            Error::transport(TransportErrorKind::Connect, "Redis refused the connection (an outage)");
                        self.at(
                            now + rtt / 2,
                            What::StoreBack {
                                p,
                                slot,
                                id,
                                reply: Box::new(Err(error)),
                            },
                        );
                    } else {
                        let command = Box::new(command);
                        let back_us = rtt - rtt / 2;
                        self.at(
                            now + rtt / 2,
                            What::StoreExec {
                                p,
                                slot,
                                id,
                                command,
                                back_us,
                            },
                        );
                    }
                    return;
                }
                Step::Sign { id, .. } => {
                    // Only for an app without a key: these have one.
                    let error = Error::Signing("the simulation has no outside signer".into());
                    op.get.handle_signature(&mut proc.app, id, Err(error), ts(now));
                }
                Step::Sleep { until } => {
                    op.generation += 1;
                    let generation = op.generation;
                    self.at(us(until, now + 1), What::Resume { p, slot, generation });
                    return;
                }
                Step::Wait { until, change } => {
                    if proc.app.changes() != change {
                        continue;
                    }
                    op.generation += 1;
                    op.waiting = true;
                    let generation = op.generation;
                    self.at(us(until, now + 1), What::Resume { p, slot, generation });
                    return;
                }
                Step::Done(result) => {
                    proc.ops[slot as usize] = None;
                    proc.free.push(slot);
                    match result {
                        Ok(token) => {
                            let expires = self.registry.expiry(token.secret().expose());
                            if expires.is_none_or(|e| e <= now) {
                                self.tally.expired_tokens_served += 1;
                            } else if expires.is_some_and(|e| e < now + 60_000_000) {
                                self.tally.under_min_life_served += 1;
                            }
                        }
                        Err(_) => self.tally.failed_calls += 1,
                    }
                    return;
                }
            }
        }
    }
}
