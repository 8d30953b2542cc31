//! Unit tests of the token cache: its states, refresh ahead, back-off, invalidation and the LRU.

use std::time::Duration;

use super::*;
use crate::error::{ApiMessage, TransportErrorKind};
use crate::models::AccessToken;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(T0 + secs)
}

/// The refresh time of a 2-hour token minted at 0: 12 minutes before expiry (the default margin),
/// brought forward by the cache's spread, at most a fifth of the margin; as whole seconds, the
/// first second at which the refresh is due.
fn due_second(t: &Token) -> i64 {
    let due = t.refresh_at();
    assert!(
        due >= at(7200 - 720 - 144) && due <= at(7200 - 720),
        "the refresh of a 2-hour token is spread over 144 s before 12 minutes ahead of expiry: {due:?}"
    );
    (due.unix_millis() + 999) / 1000 - T0
}

/// A token made at server time `created` (relative seconds) living `life` seconds.
fn minted(name: &str, created: i64, life: i64) -> AccessToken {
    serde_json::from_value(serde_json::json!({
        "token": format!("crs_{name}"),
        "createdAt": at(created).to_rfc3339(),
        "expiresAt": at(created + life).to_rfc3339(),
    }))
    .unwrap()
}

fn cache() -> TokenCache<&'static str> {
    TokenCache::new(CacheConfig::default(), 7)
}

fn capped(max_entries: usize) -> TokenCache<u32> {
    TokenCache::new(
        CacheConfig {
            max_entries,
            ..CacheConfig::default()
        },
        1,
    )
}

fn fetch(p: Poll) -> (RequestId, Option<Token>) {
    match p {
        Poll::Fetch { id } => (id, None::<Token>),
        other => panic!("expected Fetch, got {other:?}"),
    }
}

fn ready(p: Poll) -> Token {
    match p {
        Poll::Ready(t) => t,
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn server_error() -> Error {
    Error::Server {
        status: 503,
        retry_after: None,
        api: ApiMessage::default(),
    }
}

#[test]
fn empty_fetching_valid() {
    let mut c = cache();
    assert!(matches!(c.state(&"i1", at(0)), TokenState::Empty));
    let (id, stale) = fetch(c.poll(&"i1", at(0), None));
    assert!(stale.is_none());
    assert!(matches!(c.state(&"i1", at(0)), TokenState::Fetching));
    // A second caller waits for the one fetch in flight.
    assert!(matches!(c.poll(&"i1", at(0), None), Poll::Wait { until } if until == at(120)));
    // Other keys are not blocked.
    let (other, _) = fetch(c.poll(&"i2", at(0), None));
    assert_ne!(id, other);
    let t = c.handle_token(id, minted("a", 0, 7200), at(1), 0).unwrap();
    assert_eq!(t.expires_local(), at(7200));
    assert!(matches!(c.state(&"i1", at(1)), TokenState::Valid(_)));
    assert_eq!(ready(c.poll(&"i1", at(2), None)).secret().expose(), "crs_a");
    assert_eq!(c.ready_token(&"i1", at(2), None).unwrap().secret().expose(), "crs_a");
}

#[test]
fn refresh_at_ten_percent_or_five_minutes() {
    let c = cache();
    // 2 hours: 10% is 12 minutes.
    assert_eq!(
        Token::new(minted("a", 0, 7200), at(0), 0, c.config()).refresh_at(),
        at(7200 - 720)
    );
    // 30 minutes: 10% is 3 minutes, so 5 minutes wins.
    assert_eq!(
        Token::new(minted("a", 0, 1800), at(0), 0, c.config()).refresh_at(),
        at(1800 - 300)
    );
    // 4 minutes: never earlier than half-way.
    assert_eq!(
        Token::new(minted("a", 0, 240), at(0), 0, c.config()).refresh_at(),
        at(120)
    );
    // Created a year ago, expiring in 2 hours: the margin comes from the 2 hours left, not
    // from the year (a refresh due before the token arrived; found by fuzz/responses).
    let year = 365 * 86_400;
    assert_eq!(
        Token::new(minted("a", -year, year + 7200), at(0), 0, c.config()).refresh_at(),
        at(7200 - 720)
    );
}

#[test]
fn refreshing_serves_the_old_token() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let d = due_second(&c.handle_token(id, minted("old", 0, 7200), at(0), 0).unwrap());
    assert!(c.ready_token(&"i", at(d - 1), None).is_some());
    assert!(
        c.ready_token(&"i", at(d), None).is_none(),
        "refresh due: the hot path defers to poll"
    );
    let (id, _) = fetch(c.poll(&"i", at(d), None));
    assert_eq!(
        c.token_with_life(&"i", at(d), Duration::from_secs(60))
            .unwrap()
            .secret()
            .expose(),
        "crs_old"
    );
    assert!(matches!(c.state(&"i", at(d)), TokenState::Refreshing(_)));
    // Others keep getting the old token while the refresh is in flight.
    assert_eq!(ready(c.poll(&"i", at(d + 1), None)).secret().expose(), "crs_old");
    assert_eq!(
        c.ready_token(&"i", at(d + 1), None).unwrap().secret().expose(),
        "crs_old"
    );
    c.handle_token(id, minted("new", d + 1, 7200), at(d + 1), 0).unwrap();
    assert_eq!(ready(c.poll(&"i", at(d + 2), None)).secret().expose(), "crs_new");
}

#[test]
fn failed_refresh_keeps_serving_the_valid_token() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    c.handle_token(id, minted("old", 0, 7200), at(0), 0).unwrap();
    let (id, _) = fetch(c.poll(&"i", at(6500), None));
    let e = c.handle_error(id, server_error(), at(6500)).unwrap();
    assert!(matches!(e, Error::Server { .. }));
    assert!(matches!(
        c.state(&"i", at(6500)),
        TokenState::Failed { token: Some(_), .. }
    ));
    assert_eq!(ready(c.poll(&"i", at(6500), None)).secret().expose(), "crs_old");
    assert!(c.ready_token(&"i", at(6500), None).is_some());
    // After the back-off a poll retries, still offering the old token.
    let _ = fetch(c.poll(&"i", at(6502), None));
    assert!(c.token_with_life(&"i", at(6502), Duration::from_secs(60)).is_some());
}

#[test]
fn never_hands_out_a_nearly_expired_token() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
    // Refresh fails repeatedly; once under 60 s remain the token is no longer handed out.
    let (id, _) = fetch(c.poll(&"i", at(7100), None));
    let busy = Error::Server {
        status: 503,
        retry_after: Some(Duration::from_secs(100)),
        api: ApiMessage::default(),
    };
    c.handle_error(id, busy, at(7100)).unwrap();
    assert!(matches!(c.poll(&"i", at(7140), None), Poll::Ready(_)));
    assert!(matches!(c.poll(&"i", at(7141), None), Poll::Failed { .. }));
    assert!(c.ready_token(&"i", at(7141), None).is_none());
    // A per-call minimum overrides the default.
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
    assert!(c.ready_token(&"i", at(0), Some(Duration::from_secs(7201))).is_none());
    let (_, stale) = fetch(c.poll(&"i", at(0), Some(Duration::from_secs(7201))));
    assert!(stale.is_none());
}

#[test]
fn backoff_grows_with_jitter_and_honours_retry_after() {
    let mut c = cache();
    let mut retry_ats = Vec::new();
    let mut now = at(0);
    for _ in 0..6 {
        let (id, _) = fetch(c.poll(&"i", now, None));
        c.handle_error(id, server_error(), now).unwrap();
        let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
            panic!()
        };
        retry_ats.push(retry_at.unix_millis() - now.unix_millis());
        now = retry_at;
    }
    // Equal jitter: attempt n waits between half and all of 2^(n-1) s.
    for (n, d) in retry_ats.iter().enumerate() {
        let full = 1000i64 << n;
        assert!(*d >= full / 2 && *d <= full, "attempt {n}: {d} ms");
    }
    // Retry-After beats a shorter back-off.
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let limited = Error::RateLimited {
        retry_after: Some(Duration::from_secs(42)),
        api: ApiMessage::default(),
    };
    c.handle_error(id, limited, at(0)).unwrap();
    assert!(matches!(c.poll(&"i", at(41), None), Poll::Failed { retry_at, .. } if retry_at == at(42)));
    assert!(matches!(c.poll(&"i", at(42), None), Poll::Fetch { .. }));
    // A success resets the back-off.
}

#[test]
fn the_error_states_the_wait_imposed_not_the_one_asked_for() {
    // Asked for a day: blocked for the cap (300 s), and the error says 300 s.
    for asked in [
        Error::RateLimited {
            retry_after: Some(Duration::from_secs(86_400)),
            api: ApiMessage::default(),
        },
        Error::Server {
            status: 503,
            retry_after: Some(Duration::from_secs(86_400)),
            api: ApiMessage::default(),
        },
    ] {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let returned = c.handle_error(id, asked.clone(), at(0)).unwrap();
        let Poll::Failed { error, retry_at } = c.poll(&"i", at(1), None) else {
            panic!()
        };
        assert_eq!(retry_at, at(300));
        for e in [&returned, &error] {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(300)), "{asked:?}");
            assert!(e.to_string().contains("retry after 300 s"), "{e}");
            assert!(!e.to_string().contains("86400"), "{e}");
        }
    }
    // Asked for less than the back-off: the longer back-off is the wait, and is stated.
    let mut c = cache();
    let mut now = at(0);
    for _ in 0..3 {
        let (id, _) = fetch(c.poll(&"i", now, None));
        c.handle_error(id, server_error(), now).unwrap();
        let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
            panic!()
        };
        now = retry_at;
    }
    let (id, _) = fetch(c.poll(&"i", now, None));
    let asked = Error::RateLimited {
        retry_after: Some(Duration::from_millis(1)),
        api: ApiMessage::default(),
    };
    let returned = c.handle_error(id, asked, now).unwrap();
    let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
        panic!()
    };
    assert_eq!(returned.retry_after(), Some(retry_at.saturating_since(now)));
    assert!(returned.retry_after().unwrap() >= Duration::from_secs(4), "{returned}");
    // Without a `Retry-After`, nothing is made up.
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    assert_eq!(c.handle_error(id, server_error(), at(0)).unwrap(), server_error());
}

#[test]
fn same_seed_same_jitter() {
    let run = |seed| {
        let mut c: TokenCache<&str> = TokenCache::new(CacheConfig::default(), seed);
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_error(id, server_error(), at(0)).unwrap();
        let (id, _) = fetch(c.poll(&"i", at(10), None));
        c.handle_error(id, server_error(), at(10)).unwrap();
        match c.state(&"i", at(10)) {
            TokenState::Failed { retry_at, .. } => retry_at,
            _ => panic!(),
        }
    };
    assert_eq!(run(1), run(1));
}

#[test]
fn answers_are_accepted_once() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
    assert!(matches!(
        c.handle_token(id, minted("b", 0, 7200), at(0), 0),
        Err(Error::UnknownRequest(_))
    ));
    assert!(matches!(
        c.handle_error(id, server_error(), at(0)),
        Err(Error::UnknownRequest(_))
    ));
    assert!(matches!(
        c.handle_error(RequestId(999), server_error(), at(0)),
        Err(Error::UnknownRequest(999))
    ));
}

#[test]
fn abandoned_fetch_is_superseded() {
    let mut c = cache();
    let (old, _) = fetch(c.poll(&"i", at(0), None));
    assert!(matches!(c.poll(&"i", at(119), None), Poll::Wait { .. }));
    let (new, _) = fetch(c.poll(&"i", at(120), None));
    assert!(c.handle_token(old, minted("late", 0, 7200), at(121), 0).is_err());
    c.handle_token(new, minted("new", 0, 7200), at(121), 0).unwrap();
    assert_eq!(ready(c.poll(&"i", at(122), None)).secret().expose(), "crs_new");
}

#[test]
fn cancelled_fetch_leaves_no_backoff() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let cancelled = Error::Transport {
        kind: TransportErrorKind::Cancelled,
        message: "dropped".into(),
    };
    c.handle_error(id, cancelled, at(0)).unwrap();
    assert!(matches!(c.poll(&"i", at(0), None), Poll::Fetch { .. }));
}

#[test]
fn invalidate_only_the_rejected_token() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
    assert!(!c.invalidate(&"i", "crs_other"));
    assert!(c.ready_token(&"i", at(1), None).is_some());
    assert!(c.invalidate(&"i", "crs_a"));
    assert!(c.ready_token(&"i", at(1), None).is_none());
    assert!(matches!(c.poll(&"i", at(1), None), Poll::Fetch { .. }));
}

#[test]
fn clock_offset_moves_expiry_onto_the_local_clock() {
    let mut c = cache();
    // Server two hours ahead: its expiresAt is 4 h after our now, but only 2 h of life remain.
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let t = c.handle_token(id, minted("a", 7200, 7200), at(0), 7_200_000).unwrap();
    assert_eq!(t.expires_local(), at(7200));
    assert!(c.ready_token(&"i", at(7200 - 59), None).is_none());
    // Server two hours behind.
    let (id, _) = fetch(c.poll(&"j", at(0), None));
    let t = c.handle_token(id, minted("b", -7200, 7200), at(0), -7_200_000).unwrap();
    assert_eq!(t.expires_local(), at(7200));
}

#[test]
fn server_clock_jumping_ahead_brings_cached_expiry_forward() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let t = c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
    assert_eq!(t.expires_local(), at(7200));
    due_second(&t);
    let margin = t.expires_local().saturating_since(t.refresh_at());
    // Ten minutes later the server's clock is seen 2 h - 10 min 50 s ahead: the token
    // has 50 s left there, though 1 h 50 min here.
    assert_eq!(c.observe_offset((7200 - 650) * 1000), 1);
    let now = at(600);
    assert!(
        c.ready_token(&"i", now, None).is_none(),
        "50 s left is less than min_remaining"
    );
    let (_, stale) = fetch(c.poll(&"i", now, None));
    assert!(stale.is_none(), "nothing usable to serve meanwhile");
    let cached = c.token_even_expired(&"i").unwrap();
    assert_eq!(cached.expires_local(), at(650));
    assert_eq!(
        cached.refresh_at(),
        at(650).minus(margin),
        "the refresh comes forward as much"
    );
    // While that fetch runs, the token serves whoever needs less than its 50 s.
    assert!(c.ready_token(&"i", now, Some(Duration::from_secs(30))).is_some());
    assert!(c.ready_token(&"i", now, None).is_none());
    // Handles given out earlier keep what they were given; offsets never lengthen a token.
    assert_eq!(t.expires_local(), at(7200));
    assert_eq!(c.observe_offset(0), 0);
    assert_eq!(c.observe_offset(-3_600_000), 0);
    assert_eq!(c.token_even_expired(&"i").unwrap().expires_local(), at(650));
}

#[test]
fn already_expired_token_is_an_error() {
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let e = c.handle_token(id, minted("a", -10_000, 7200), at(0), 0).unwrap_err();
    assert!(e.to_string().contains("already expired"));
}

#[test]
fn lru_cap_evicts_least_recently_used_with_second_chance() {
    let mut c = capped(3);
    for k in 0..3 {
        let (id, _) = fetch(c.poll(&k, at(0), None));
        c.handle_token(id, minted(&k.to_string(), 0, 7200), at(0), 0).unwrap();
    }
    // 0 is the oldest, but a lock-free read marks it: 1 goes instead.
    assert!(c.ready_token(&0, at(1), None).is_some());
    let _ = c.poll(&3, at(1), None);
    assert_eq!(c.len(), 3);
    assert!(c.ready_token(&0, at(1), None).is_some());
    assert!(matches!(c.state(&1, at(1)), TokenState::Empty));
    // Entries with a fetch in flight are never evicted.
    let mut c = capped(1);
    let (id, _) = fetch(c.poll(&0, at(0), None));
    let _ = c.poll(&1, at(0), None);
    assert!(c.handle_token(id, minted("0", 0, 7200), at(0), 0).is_ok());
}

#[test]
fn evicted_and_removed_keys_leave_nothing_behind() {
    let mut c = capped(4);
    for k in 0..1_000 {
        let (id, _) = fetch(c.poll(&k, at(0), None));
        if k % 3 == 0 {
            c.handle_error(id, server_error(), at(0)).unwrap();
        } else {
            c.handle_token(id, minted(&k.to_string(), 0, 7200), at(0), 0).unwrap();
        }
        if k % 5 == 0 {
            c.remove(&k);
        }
    }
    assert!(c.len() <= 4);
    assert_eq!(c.recency.len(), c.len(), "the recency index holds exactly the keys");
    assert!(c.in_flight.is_empty());
    // A new key starts clean: it has neither the failure nor the fetch of a removed key.
    let (id, _) = fetch(c.poll(&5_000, at(0), None));
    c.handle_error(id, server_error(), at(0)).unwrap();
    c.remove(&5_000);
    assert!(matches!(c.state(&5_001, at(0)), TokenState::Empty));
    assert!(matches!(c.poll(&5_001, at(0), None), Poll::Fetch { .. }));
}

#[test]
fn background_refresh_schedule() {
    let mut c = cache();
    assert_eq!(c.poll_timeout(at(0)), None);
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let d = due_second(&c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap());
    assert_eq!(
        c.poll_timeout(at(0)),
        Some(c.token_even_expired(&"i").unwrap().refresh_at())
    );
    assert!(c.poll_refresh(at(d - 1)).is_none());
    let (id, key) = c.poll_refresh(at(d)).unwrap();
    assert_eq!(key, "i");
    assert!(c.poll_refresh(at(d)).is_none(), "one fetch per key");
    assert_eq!(c.poll_timeout(at(0)), None);
    c.handle_error(id, server_error(), at(d)).unwrap();
    let next = c.poll_timeout(at(0)).unwrap();
    assert!(next > at(d) && next <= at(d + 1));
}

/// Refreshes are spread: caches seeded apart (processes) that receive the same token refresh it
/// at different moments, each within a fifth of the margin before the usual time, and never
/// before half the token's life.
#[test]
fn refreshes_are_spread_between_processes() {
    let mut dues = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut c = TokenCache::new(CacheConfig::default(), seed);
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let t = c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        due_second(&t);
        dues.insert(t.refresh_at());
    }
    assert!(dues.len() >= 15, "20 processes, {} refresh times", dues.len());
    // A 4-minute token: the margin is half its life, and the spread never goes before it.
    let mut c = cache();
    let (id, _) = fetch(c.poll(&"i", at(0), None));
    let t = c.handle_token(id, minted("a", 0, 240), at(0), 0).unwrap();
    assert_eq!(t.refresh_at(), at(120));
}
