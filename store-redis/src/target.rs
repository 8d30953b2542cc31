//! The store's URL: checked, parsed into a `redis::Client`, and kept only in a form fit to show
//! (its password replaced by `***`), with the secrets to scrub from any message.

use icr_app_core::Error;

/// What a URL must look like, for messages.
const URL_FORMS: &str = "redis://[[user]:password@]host[:port][/db], rediss://… for TLS, unix:///path/to/redis.sock[?db=N&user=U&pass=P], redis+cluster://[user:password@]host:port[,host:port...] (rediss+cluster:// for TLS), or redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/DB] (rediss+sentinel://)";

/// A Redis Cluster's default port, and a Sentinel's.
const CLUSTER_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

/// The URL's schemes that the redis crate knows.
const TCP_SCHEMES: [&str; 4] = ["redis", "rediss", "valkey", "valkeys"];
const UNIX_SCHEMES: [&str; 3] = ["unix", "redis+unix", "valkey+unix"];

/// What the URL names: one server, a cluster, or a primary the sentinels watch.
pub(crate) enum Topology {
    /// One server (`redis://`, `rediss://`, `unix://`, ...).
    Single(redis::Client),
    /// A Redis Cluster: its seed nodes, as `redis[s]://[userinfo@]host:port` URLs.
    Cluster {
        /// The seed nodes.
        nodes: Vec<String>,
    },
    /// A primary that sentinels watch.
    Sentinel(Sentinels),
}

/// A `redis+sentinel://` URL, parsed.
pub(crate) struct Sentinels {
    /// The sentinels, as `redis[s]://[userinfo@]host:port` URLs (their connection info).
    pub(crate) sentinels: Vec<redis::ConnectionInfo>,
    /// The same without credentials: for sentinels that require none (`AUTH` is then refused).
    pub(crate) sentinels_without_credentials: Vec<redis::ConnectionInfo>,
    /// The name of the primary they watch.
    pub(crate) master: String,
    /// `redis` or `rediss`.
    scheme: &'static str,
    /// `user:password` or `password` as written (percent-encoded), if any.
    userinfo: Option<String>,
    /// The database on the primary.
    db: i64,
}

impl Sentinels {
    /// How to reach the primary the sentinels named (`host`, `port`): with the URL's
    /// credentials, database and TLS.
    pub(crate) fn primary(&self, host: &str, port: u16) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo as _;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let userinfo = self.userinfo.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{}://{userinfo}{host}:{port}/{}", self.scheme, self.db).into_connection_info()
    }
}

/// Where the store connects, as it may be shown.
pub(crate) struct Target {
    /// The URL with the password (and a unix socket's `pass=`) replaced by `***`.
    pub(crate) shown: String,
    /// Whether the connection is TLS (`rediss://`).
    pub(crate) tls: bool,
    /// The password as written in the URL and decoded: scrubbed from every message.
    secrets: Vec<String>,
}

impl Target {
    /// `text` with every secret of the URL replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }
}

/// Parses `url` into the topology it names (nothing connects) and the target, as shown.
pub(crate) fn parse_any(url: &str) -> Result<(Topology, Target), Error> {
    let url = url.trim();
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis+cluster") => several(url, "redis", false),
        Some("rediss+cluster") => several(url, "rediss", false),
        Some("redis+sentinel") => several(url, "redis", true),
        Some("rediss+sentinel") => several(url, "rediss", true),
        _ => parse(url).map(|(client, target)| (Topology::Single(client), target)),
    }
}

/// A cluster's or the sentinels' URL: `SCHEME://[userinfo@]host:port[,host:port...][/path]`,
/// each node checked as a `base://` URL of its own.
fn several(url: &str, base: &'static str, sentinel: bool) -> Result<(Topology, Target), Error> {
    let form = if sentinel {
        format!("{base}+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/DB]")
    } else {
        format!("{base}+cluster://[user:password@]host:port[,host:port...]")
    };
    let refuse = |problem: &str| Error::config("Redis URL", format!("{problem}; expected {form}"));
    let (scheme, rest) = url.split_once("://").unwrap_or_default();
    if rest.contains(['?', '#']) {
        return Err(refuse("a query or a fragment is not taken here"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let default_port = if sentinel { SENTINEL_PORT } else { CLUSTER_PORT };
    let mut nodes = Vec::new();
    let mut node_targets = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        if host.is_empty() {
            return Err(refuse("a host is empty"));
        }
        // A bare IPv6 address needs brackets; `host` alone takes the default port.
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, _)| !h.is_empty() && (!h.contains(':') || h.ends_with(']')));
        let host = if has_port {
            host.to_owned()
        } else {
            format!("{host}:{default_port}")
        };
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let node = format!("{base}://{userinfo}{host}");
        // Each node is checked as a URL of its own (the port, a wildcard host, ...); its
        // messages never quote it.
        let (client, target) = parse(&node).map_err(|e| match e {
            Error::Config { problem, .. } => refuse(&problem),
            other => other,
        })?;
        let (bare, _) = parse(&format!("{base}://{host}"))?;
        nodes.push((node, client, bare));
        node_targets.push(target);
    }
    let first = node_targets.first().ok_or_else(|| refuse("no host"))?;
    let mut secrets: Vec<String> = node_targets.iter().flat_map(|t| t.secrets.iter().cloned()).collect();
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    let shown_userinfo = first
        .shown
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| format!("{userinfo}@"))
        .unwrap_or_default();
    let path_shown = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    let target = Target {
        shown: format!("{}://{shown_userinfo}{hosts}{path_shown}", scheme.to_ascii_lowercase()),
        tls: base == "rediss",
        secrets,
    };
    if !sentinel {
        if !path.is_empty() {
            return Err(refuse("a cluster has no databases but 0, and takes no path"));
        }
        let nodes = nodes.into_iter().map(|(node, _, _)| node).collect();
        return Ok((Topology::Cluster { nodes }, target));
    }
    let (master, db) = match path.split_once('/') {
        Some((master, "")) => (master, 0),
        Some((master, db)) => (
            master,
            db.parse::<i64>().map_err(|_| refuse("the database is not a number"))?,
        ),
        None => (path, 0),
    };
    let master = decode(master);
    if master.is_empty() || master.contains('/') {
        return Err(refuse("the name of the primary (MASTER_NAME) is missing"));
    }
    let sentinels = Sentinels {
        sentinels_without_credentials: nodes
            .iter()
            .map(|(_, _, bare)| bare.get_connection_info().clone())
            .collect(),
        sentinels: nodes
            .iter()
            .map(|(_, client, _)| client.get_connection_info().clone())
            .collect(),
        master,
        scheme: base,
        userinfo: userinfo.map(str::to_owned),
        db,
    };
    Ok((Topology::Sentinel(sentinels), target))
}

/// Parses a one-server `url` into a client (which does not connect) and the target it names.
pub(crate) fn parse(url: &str) -> Result<(redis::Client, Target), Error> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        // The url crate's messages never quote the input, so no password can leak here.
        Error::config("Redis URL", format!("{e}; expected {URL_FORMS}"))
    })?;
    let scheme = parsed.scheme();
    let unix = UNIX_SCHEMES.contains(&scheme);
    if !unix && !TCP_SCHEMES.contains(&scheme) {
        return Err(Error::config(
            "Redis URL",
            format!("the scheme {scheme}:// is not a Redis one; expected {URL_FORMS}"),
        ));
    }
    if parsed.fragment() == Some("insecure") {
        return Err(Error::config(
            "Redis URL",
            "#insecure (TLS without checking the server's certificate) is not supported; \
             give the CA that signed the server's certificate with RedisStore::tls_root_certificates",
        ));
    }

    let mut secrets = Vec::new();
    if let Some(password) = parsed.password() {
        secrets.push(password.to_owned());
        secrets.push(decode(password));
    } else if !parsed.username().is_empty() {
        // `redis://PASSWORD@host`: a user without a password is most likely a password written
        // where the user goes; it is kept as secret as one.
        secrets.push(parsed.username().to_owned());
        secrets.push(decode(parsed.username()));
    }
    for (name, value) in parsed.query_pairs() {
        if is_secret_parameter(&name) {
            secrets.push(value.into_owned());
        }
    }
    if let Some(query) = parsed.query() {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && is_secret_parameter(&decode(name))
            {
                secrets.push(value.to_owned());
            }
        }
    }
    // Longest first, so that a password that contains another secret is scrubbed whole.
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();

    let target = Target {
        shown: shown(&parsed),
        tls: matches!(scheme, "rediss" | "valkeys"),
        secrets,
    };
    let client = redis::Client::open(url.trim()).map_err(|e| {
        Error::config(
            "Redis URL",
            format!("{}; expected {URL_FORMS}", target.scrub(&e.to_string())),
        )
    })?;
    Ok((client, target))
}

fn is_secret_parameter(name: &str) -> bool {
    matches!(name, "pass" | "password")
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL with its password (or, without one, its user) and secret query parameters replaced
/// by `***`: `redis://user:***@host`, `redis://***@host`.
fn shown(url: &url::Url) -> String {
    let mut shown = url.clone();
    let hidden = if shown.password().is_some() {
        shown.set_password(Some("***"))
    } else if !shown.username().is_empty() {
        shown.set_username("***")
    } else {
        Ok(())
    };
    if hidden.is_err() {
        // Only for URLs without a host, which cannot hold a user or a password; never shown
        // whole all the same.
        return format!("{}://***", url.scheme());
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_parameter(&name) {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown_of(url: &str) -> String {
        parse(url)
            .map(|(_, t)| t.shown)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn the_password_is_replaced_and_the_rest_kept() {
        assert_eq!(shown_of("redis://127.0.0.1/"), "redis://127.0.0.1/");
        assert_eq!(
            shown_of("redis://:hunter2@10.0.0.1:6380/3"),
            "redis://:***@10.0.0.1:6380/3"
        );
        assert_eq!(
            shown_of("rediss://app:p%40ss%3Aw0rd@redis.internal/0"),
            "rediss://app:***@redis.internal/0"
        );
        // A user without a password: most likely the password, in the user's place.
        assert_eq!(shown_of("redis://hunter2@redis.internal"), "redis://***@redis.internal");
        assert_eq!(
            shown_of("redis://hunter2:@redis.internal/1"),
            "redis://***@redis.internal/1"
        );
        assert_eq!(
            shown_of("rediss://p%40ss@redis.internal:6380"),
            "rediss://***@redis.internal:6380"
        );
        assert_eq!(shown_of("valkey://hunter2@10.0.0.1"), "valkey://***@10.0.0.1");
        assert_eq!(shown_of("valkeys://app:hunter2@10.0.0.1"), "valkeys://app:***@10.0.0.1");
        assert_eq!(shown_of("redis://:hunter2@[::1]:6380"), "redis://:***@[::1]:6380");
        assert_eq!(
            shown_of("unix:///run/redis.sock?db=2&pass=hunter2"),
            "unix:///run/redis.sock?db=2&pass=***"
        );
        assert_eq!(
            shown_of("redis+unix:///run/redis.sock?user=app&password=hunter2"),
            "redis+unix:///run/redis.sock?user=app&password=***"
        );
        assert_eq!(
            shown_of("valkey+unix:///run/redis.sock?pass=hunter2"),
            "valkey+unix:///run/redis.sock?pass=***"
        );
    }

    #[test]
    fn a_user_in_a_unix_url_is_never_shown_whole() {
        assert_eq!(
            shown_of("redis+unix://hunter2@localhost/run/redis.sock"),
            "redis+unix://***@localhost/run/redis.sock"
        );
        // Userinfo without a host: not a URL; refused without quoting it.
        for url in ["unix://hunter2@/run/redis.sock", "unix://app:hunter2@/run/redis.sock"] {
            let message = parse(url)
                .err()
                .unwrap_or_else(|| panic!("{url} was accepted"))
                .to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_password_in_the_users_place_is_scrubbed() {
        let (_, target) = parse("redis://p%40ss@redis.internal/0").unwrap();
        assert_eq!(target.scrub("AUTH p@ss / p%40ss"), "AUTH *** / ***");
    }

    #[test]
    fn secrets_are_scrubbed_in_both_forms() {
        let (_, target) = parse("redis://app:p%40ss%3Aw0rd@redis.internal/0").unwrap();
        assert_eq!(target.scrub("AUTH app p@ss:w0rd / p%40ss%3Aw0rd"), "AUTH app *** / ***");
        let (_, target) = parse("unix:///run/redis.sock?pass=a%20b").unwrap();
        assert_eq!(target.scrub("a b|a%20b"), "***|***");
        assert!(!target.tls);
        assert!(parse("rediss://h").unwrap().1.tls);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "http://:hunter2@127.0.0.1/",
            "redis://:hunter2@127.0.0.1:notaport/",
            "redis://:hunter2@127.0.0.1/notadb",
            "rediss://:hunter2@127.0.0.1/#insecure",
            ":hunter2@127.0.0.1",
            "redis://:hunter2@0.0.0.0/",
        ] {
            let error = parse(url).err().unwrap_or_else(|| panic!("{url} was accepted"));
            let message = error.to_string();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("Redis URL"), "{message}");
        }
    }
}
