//! Driving the fleet binaries (`fleet-registry`, `fleet-worker`) as child processes: shared by
//! tests/tests/fleet.rs and the `fleet-bench` binary (each includes this file with `#[path]`;
//! a directory without `main.rs` is no binary of its own).
//!
//! Every wait has a deadline and fails with the process's name and what it was waiting for;
//! children are killed when their handle is dropped, and exit by themselves when their stdin
//! closes (the test or bench died).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long any one answer may take before the test fails (only a broken run waits this long).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A child process speaking lines on stdin and stdout.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Spawns `command` with piped stdin and stdout (stderr is inherited, so a child's panic
    /// shows).
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The process's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}'s stdin is closed"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("send `{line}` to {name}: {e}"));
    }

    /// The next line, within [`DEADLINE`].
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{} said nothing for {DEADLINE:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait();
                panic!("{} ended ({status:?}) before answering", self.name)
            }
        }
    }

    /// Lines up to and including the first that starts with `word` (and a space, or nothing).
    pub fn until(&mut self, word: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let last = line == word || line.starts_with(&format!("{word} "));
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Sends `command` and returns its one-line answer.
    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin and waits for the exit status (killing it after [`DEADLINE`]).
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > DEADLINE {
                self.kill();
                panic!("{} did not exit", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.kill();
    }
}

/// One app of a registry process: its id, the path of its private key, its installations.
#[derive(Clone, Debug)]
pub struct AppInfo {
    pub id: String,
    pub key_path: String,
    pub installations: Vec<String>,
}

/// A `fleet-registry` process.
pub struct Registry {
    proc: Proc,
    pub base_url: String,
    pub apps: Vec<AppInfo>,
}

impl Registry {
    /// Starts `binary` with `apps` (app id, `demo` or `other` key, installations) and reads what
    /// it prints.
    pub fn start(binary: &Path, apps: &[(&str, &str, usize)]) -> Self {
        let mut command = Command::new(binary);
        for (id, key, n) in apps {
            command.arg("--app").arg(id).arg(key).arg(n.to_string());
        }
        let mut proc = Proc::spawn("fleet-registry", command);
        let lines = proc.until("ready");
        let mut base_url = String::new();
        let mut infos = Vec::new();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["base-url", url] => base_url = (*url).to_owned(),
                ["app", id, key_path, installations @ ..] => infos.push(AppInfo {
                    id: (*id).to_owned(),
                    key_path: (*key_path).to_owned(),
                    installations: installations.iter().map(|s| (*s).to_owned()).collect(),
                }),
                _ => {}
            }
        }
        assert!(
            base_url.starts_with("http://127.0.0.1:"),
            "fleet-registry printed no base URL"
        );
        Self {
            proc,
            base_url,
            apps: infos,
        }
    }

    /// Total installation mints, and per installation.
    pub fn mints(&mut self) -> (usize, BTreeMap<String, usize>) {
        let answer = self.proc.ask("mints");
        let mut words = answer.split_whitespace();
        assert_eq!(words.next(), Some("mints"), "{answer}");
        let total = words.next().and_then(|n| n.parse().ok()).expect("a total");
        let per = words
            .filter_map(|w| w.split_once('='))
            .map(|(id, n)| (id.to_owned(), n.parse().unwrap()))
            .collect();
        (total, per)
    }

    /// Each installation's organization, in the order of the installations.
    pub fn organizations(&mut self) -> Vec<String> {
        let answer = self.proc.ask("organizations");
        let orgs = answer
            .strip_prefix("organizations")
            .unwrap_or_else(|| panic!("organizations answered {answer}"));
        orgs.split_whitespace().map(str::to_owned).collect()
    }

    /// Total lookups of an organization's installation, and per organization.
    pub fn lookups(&mut self) -> (usize, BTreeMap<String, usize>) {
        let answer = self.proc.ask("lookups");
        let mut words = answer.split_whitespace();
        assert_eq!(words.next(), Some("lookups"), "{answer}");
        let total = words.next().and_then(|n| n.parse().ok()).expect("a total");
        let per = words
            .filter_map(|w| w.split_once('='))
            .map(|(org, n)| (org.to_owned(), n.parse().unwrap()))
            .collect();
        (total, per)
    }

    /// Mint requests received so far, answered or not.
    pub fn mint_requests(&mut self) -> usize {
        let answer = self.proc.ask("mint-requests");
        answer
            .strip_prefix("mint-requests ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("mint-requests answered {answer}"))
    }

    /// Runs a command that answers `ok`.
    pub fn command(&mut self, command: &str) {
        assert_eq!(self.proc.ask(command), "ok", "{command}");
    }

    /// Adds `n` installations to `app_id`; returns their ids.
    pub fn add(&mut self, app_id: &str, n: usize) -> Vec<String> {
        let answer = self.proc.ask(&format!("add {app_id} {n}"));
        let ids = answer
            .strip_prefix("installations ")
            .unwrap_or_else(|| panic!("add answered {answer}"));
        ids.split_whitespace().map(str::to_owned).collect()
    }
}

/// What a worker's round printed.
#[derive(Debug, Default)]
pub struct Round {
    /// Per installation, the SHA-256s of the tokens handed out.
    pub tokens: BTreeMap<String, BTreeSet<String>>,
    /// `ID MESSAGE` per failed call.
    pub errors: Vec<String>,
    pub gets: u64,
    pub expired: u64,
    pub min_left_ms: i64,
}

impl Round {
    /// The one token each installation got, asserting there was exactly one.
    pub fn one_token_each(&self, who: &str) -> BTreeMap<String, String> {
        self.tokens
            .iter()
            .map(|(id, shas)| {
                assert_eq!(shas.len(), 1, "{who} handed out {} tokens for {id}", shas.len());
                (id.clone(), shas.iter().next().unwrap().clone())
            })
            .collect()
    }

    /// Asserts no call failed and no token was handed out expired.
    pub fn assert_clean(&self, who: &str) {
        assert!(self.errors.is_empty(), "{who}: {:?}", self.errors);
        assert_eq!(self.expired, 0, "{who} handed out expired tokens");
        assert!(self.gets > 0, "{who} got nothing");
        assert!(
            self.min_left_ms > 0,
            "{who} handed out a token with {} ms left",
            self.min_left_ms
        );
    }
}

/// A worker's `stats` line, by name.
pub type Stats = BTreeMap<String, u64>;

/// Settings of a `fleet-worker` process.
#[derive(Clone, Debug, Default)]
pub struct WorkerConfig {
    pub redis: Option<String>,
    pub threads: usize,
    /// Extra flags (`--lease-ttl-ms 2000`, ...).
    pub flags: Vec<String>,
}

/// A `fleet-worker --serve` process.
pub struct Worker {
    proc: Proc,
    name: String,
}

impl Worker {
    /// Starts `binary` for `app` of `registry`, and waits until its client is built.
    pub fn start(binary: &Path, name: &str, base_url: &str, app: &AppInfo, config: &WorkerConfig) -> Self {
        let mut command = Command::new(binary);
        command
            .args([
                "--serve",
                "--base-url",
                base_url,
                "--app-id",
                &app.id,
                "--key",
                &app.key_path,
            ])
            .args(["--threads", &config.threads.max(1).to_string()])
            .args(&config.flags)
            .args(&app.installations);
        if let Some(url) = &config.redis {
            command.args(["--redis", url]);
        }
        let mut proc = Proc::spawn(name, command);
        let ready = proc.line();
        assert_eq!(ready, "ready", "{name} did not start");
        Self {
            proc,
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.proc.id()
    }

    /// Sends `get` (for `ids`, or the worker's installations when empty) without waiting.
    pub fn send_get(&mut self, ids: &[String]) {
        self.proc.send(format!("get {}", ids.join(" ")).trim_end());
    }

    /// Sends `loop MS` and waits until it is looping.
    pub fn start_loop(&mut self, ms: u64, ids: &[String]) {
        self.proc.send(format!("loop {ms} {}", ids.join(" ")).trim_end());
        let line = self.proc.line();
        assert_eq!(line, "looping", "{}", self.name);
    }

    /// Reads a round's lines up to `done`.
    pub fn round(&mut self) -> Round {
        let mut round = Round::default();
        for line in self.proc.until("done") {
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("token"), Some(id), Some(sha)) => {
                    round.tokens.entry(id.to_owned()).or_default().insert(sha.to_owned());
                }
                (Some("error"), Some(id), message) => round.errors.push(format!("{id} {}", message.unwrap_or(""))),
                (Some("done"), _, _) => {
                    for (key, value) in line.split_whitespace().skip(1).filter_map(|w| w.split_once('=')) {
                        let value: i64 = value.parse().unwrap();
                        match key {
                            "gets" => round.gets = value as u64,
                            "expired" => round.expired = value as u64,
                            "min_left_ms" => round.min_left_ms = value,
                            _ => {}
                        }
                    }
                }
                _ => panic!("{} printed {line}", self.name),
            }
        }
        round
    }

    /// `get` and its round.
    pub fn get(&mut self, ids: &[String]) -> Round {
        self.send_get(ids);
        self.round()
    }

    /// The client's stats.
    pub fn stats(&mut self) -> Stats {
        let answer = self.proc.ask("stats");
        assert!(answer.starts_with("stats "), "{}: {answer}", self.name);
        answer
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// The directory of the running executable's profile (`target/<profile>`), from a test binary
/// (`target/<profile>/deps/...`) or a binary (`target/<profile>/...`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    if dir.ends_with("deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}
