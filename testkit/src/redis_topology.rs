//! Real Redis topologies on loopback, for tests of the shared store's cluster and sentinel
//! support: [`RedisCluster`] (primaries, optionally with replicas, made a cluster with
//! `redis-cli --cluster create`) and [`RedisSentinel`] (a primary, its replica, and a sentinel
//! watching them, `redis-server sentinel.conf --sentinel`).
//!
//! Both need `redis-server` and `redis-cli` (Debian's `redis-server` and `redis-tools`, which
//! `./run-tests` installs). Failures are quick on loopback: a node is deemed down after 1 s.

use std::fmt;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{RedisServer, free_port, ping, scratch_dir};

/// How long a cluster or a failover may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A Redis Cluster on 127.0.0.1: `primaries` primaries (at least 3), each with `replicas`
/// replicas, every slot assigned. Killed when dropped.
///
/// ```no_run
/// use icr_app_testkit::RedisCluster;
///
/// let mut cluster = RedisCluster::start(3, 1);
/// let url = cluster.url(); // redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...
/// # let _ = url;
/// cluster.kill_primary(0); // SIGKILL; its replica takes over
/// cluster.wait_until_ok();
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    password: Option<String>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.nodes.iter().map(RedisServer::port).collect::<Vec<_>>())
            .finish()
    }
}

/// A port whose cluster bus port (10000 above) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts `primaries * (1 + replicas)` cluster-enabled servers, makes them a cluster
    /// (`redis-cli --cluster create ... --cluster-replicas N --cluster-yes`) and waits until it
    /// serves every slot.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not form within 20 s.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        Self::launch(primaries, replicas, None)
    }

    /// As [`start`](Self::start) with no replicas, every node requiring `password`
    /// (`requirepass`, and `masterauth` for replication): for `redis+cluster://:PASSWORD@…`.
    pub fn start_with_password(primaries: usize, password: &str) -> Self {
        Self::launch(primaries, 0, Some(password))
    }

    fn launch(primaries: usize, replicas: usize, password: Option<&str>) -> Self {
        assert!(primaries >= 3, "a Redis Cluster needs 3 primaries at least");
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                let mut builder = RedisServer::builder();
                if let Some(password) = password {
                    builder = builder.requirepass(password).args(["--masterauth", password]);
                }
                builder
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        // A replica takes over however long ago it last heard from its primary.
                        "--cluster-replica-validity-factor",
                        "0",
                    ])
                    .start_with(cluster_port)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(password) = password {
            create.args(["--no-auth-warning", "-a", password]);
        }
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr().to_string());
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run redis-cli (apt-get install -y redis-tools; ./run-tests installs it): {e}")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self {
            nodes,
            password: password.map(str::to_owned),
        };
        cluster.wait_until_ok();
        // And every replica is in sync with its primary.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        for node in &cluster.nodes {
            while role(node.addr(), cluster.password.as_deref()).as_deref() == Some("slave")
                && !command(node.addr(), cluster.password.as_deref(), &["INFO", "replication"])
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            {
                assert!(Instant::now() < deadline, "a replica did not sync within 20 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...` (every node as a seed).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes, primaries and replicas.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The indexes (into [`nodes`](Self::nodes)) of the running nodes that are primaries now.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running()
                    && role(self.nodes[i].addr(), self.password.as_deref()).as_deref() == Some("master")
            })
            .collect()
    }

    /// Kills (SIGKILL) the `n`th of the current [`primaries`](Self::primaries) and returns its
    /// index; with replicas, one of them takes over after about a second.
    pub fn kill_primary(&mut self, n: usize) -> usize {
        let primaries = self.primaries();
        let index = primaries[n % primaries.len()];
        self.nodes[index].stop();
        index
    }

    /// Waits until every running node reports `cluster_state:ok` and has flagged every killed
    /// node as failed (so, after [`kill_primary`](Self::kill_primary), until a replica took
    /// over).
    ///
    /// # Panics
    /// If it does not within 20 s.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let killed: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.is_running())
            .map(|n| format!("{}@", n.addr()))
            .collect();
        loop {
            // Every running node serves, and has flagged every killed node as failed (a node is
            // still deemed up for a second after it died: `ok` alone would be seen too soon).
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let password = self.password.as_deref();
                command(n.addr(), password, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
                    && command(n.addr(), password, &["CLUSTER", "NODES"]).is_ok_and(|nodes| {
                        killed.iter().all(|dead| {
                            nodes.lines().filter(|line| line.contains(dead.as_str())).all(|line| {
                                let flags = line.split(' ').nth(2).unwrap_or_default();
                                flags.split(',').any(|flag| flag == "fail")
                            })
                        })
                    })
            });
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let seen = self
                    .nodes
                    .iter()
                    .find(|n| n.is_running())
                    .and_then(|n| command(n.addr(), self.password.as_deref(), &["CLUSTER", "NODES"]).ok())
                    .unwrap_or_default();
                panic!("the cluster did not reach cluster_state:ok within 20 s; its nodes:\n{seen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A primary, its replica and a sentinel watching them (`sentinel monitor NAME 127.0.0.1 PORT
/// 1`, down after 1 s), on 127.0.0.1. Killed when dropped.
///
/// ```no_run
/// use icr_app_testkit::RedisSentinel;
///
/// let mut sentinel = RedisSentinel::start("mymaster");
/// let url = sentinel.url(); // redis+sentinel://127.0.0.1:S/mymaster
/// # let _ = url;
/// sentinel.kill_primary(); // the replica is promoted after about a second
/// sentinel.wait_for_new_primary();
/// ```
pub struct RedisSentinel {
    master: String,
    servers: Vec<RedisServer>,
    sentinel: Option<Child>,
    sentinel_port: u16,
    dir: PathBuf,
    /// The index (into the servers) of the primary at the start.
    first_primary: usize,
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("master", &self.master)
            .field("sentinel_port", &self.sentinel_port)
            .field(
                "servers",
                &self.servers.iter().map(RedisServer::port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RedisSentinel {
    /// Starts a primary, a replica of it (in sync before this returns) and a sentinel that
    /// watches the primary under the name `master`.
    ///
    /// # Panics
    /// If `redis-server` is missing, or the replica or the sentinel is not ready within 20 s.
    pub fn start(master: &str) -> Self {
        let primary = RedisServer::start();
        let replica = RedisServer::builder()
            .args(["--replicaof", "127.0.0.1", &primary.port().to_string()])
            .start();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !command(replica.addr(), None, &["INFO", "replication"])
            .is_ok_and(|i| i.contains("master_link_status:up"))
        {
            assert!(Instant::now() < deadline, "the replica did not sync within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let dir = scratch_dir();
        let mut this = Self {
            master: master.to_owned(),
            servers: vec![primary, replica],
            sentinel: None,
            sentinel_port: 0,
            dir,
            first_primary: 0,
        };
        for _ in 0..5 {
            let port = free_port();
            if this.launch_sentinel(port) {
                return this;
            }
        }
        panic!("the sentinel did not start");
    }

    fn launch_sentinel(&mut self, port: u16) -> bool {
        let config = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel-{port}.log\n\
             sentinel monitor {name} 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            dir = self.dir.display(),
            name = self.master,
            primary = self.servers[self.first_primary].port(),
        );
        let path = self.dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let child = Command::new("redis-server")
            .arg(&path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run redis-server --sentinel: {e}"));
        self.sentinel = Some(child);
        self.sentinel_port = port;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.sentinel.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.sentinel = None;
                return false;
            }
            // Ready once it knows the replica (it learns it from the primary's INFO).
            if ping(addr)
                && command(addr, None, &["SENTINEL", "REPLICAS", &self.master])
                    .is_ok_and(|r| r.starts_with('*') && r != "*0")
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `redis+sentinel://127.0.0.1:S/NAME`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{}", self.sentinel_port, self.master)
    }

    /// The sentinel's port.
    pub fn sentinel_port(&self) -> u16 {
        self.sentinel_port
    }

    /// The primary and its replica, in the order they were started.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The port of the server the sentinel names as the primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.sentinel_port));
        let reply = command(addr, None, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master]).ok()?;
        reply.lines().last()?.trim().parse().ok()
    }

    /// Kills (SIGKILL) the server that is the primary now; the sentinel promotes the replica
    /// after about a second.
    pub fn kill_primary(&mut self) {
        let port = self.primary_port();
        for server in &mut self.servers {
            if Some(server.port()) == port {
                server.stop();
            }
        }
    }

    /// Waits until the sentinel names a running primary that says it is one.
    ///
    /// # Panics
    /// If it does not within 20 s.
    pub fn wait_for_new_primary(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let port = self.primary_port();
            let running = self
                .servers
                .iter()
                .any(|s| Some(s.port()) == port && s.is_running() && role(s.addr(), None).as_deref() == Some("master"));
            if running {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel named no running primary within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.sentinel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `role:master` or `role:slave` from `INFO replication`.
fn role(addr: SocketAddr, password: Option<&str>) -> Option<String> {
    let info = command(addr, password, &["INFO", "replication"]).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("role:"))
        .map(|role| role.trim().to_owned())
}

/// Sends one command and returns its reply as text: a status or error line, a bulk string's
/// contents, or an array's elements one a line (after its `*N` line; bulk strings only).
/// With `password`, `AUTH` first (its `+OK` skipped).
fn command(addr: SocketAddr, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let resp = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    if let Some(password) = password {
        stream.write_all(resp(&["AUTH", password]).as_bytes())?;
    }
    stream.write_all(resp(args).as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if password.is_some() {
        reader.read_line(&mut line)?;
        line.clear();
    }
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    let bulk = |reader: &mut BufReader<TcpStream>, header: &str| -> std::io::Result<String> {
        let len: i64 = header.get(1..).and_then(|n| n.parse().ok()).unwrap_or(-1);
        if len < 0 {
            return Ok(String::new());
        }
        let mut body = vec![0; usize::try_from(len).unwrap_or(0) + 2];
        reader.read_exact(&mut body)?;
        body.truncate(body.len() - 2);
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    if line.starts_with('$') {
        return bulk(&mut reader, &line);
    }
    if let Some(count) = line.strip_prefix('*') {
        let count: i64 = count.parse().unwrap_or(0);
        let mut text = line.clone();
        for _ in 0..count.max(0) {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            text.push('\n');
            if header.starts_with('$') {
                text.push_str(&bulk(&mut reader, header)?);
            } else {
                text.push_str(header);
            }
        }
        return Ok(text);
    }
    Ok(line)
}
