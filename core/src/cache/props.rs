//! Property tests of the token state machine over random sequences of polls, answers, failures,
//! invalidations, refreshes and time jumps (moved here from `core/tests/cache_props.rs` when the
//! cache became private).
//!
//! Besides what a caller can see, they check the cache's own bookkeeping after every step: the
//! recency index holds exactly the keys, and the id -> key map of fetches in flight agrees with
//! each entry's in-flight record.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::{Poll, RequestId, TokenCache, TokenState};
use crate::cache::CacheConfig;
use crate::clock::Timestamp;
use crate::error::{ApiMessage, Error, TransportErrorKind};
use crate::models::AccessToken;

#[derive(Clone, Debug)]
enum Op {
    Poll {
        key: u8,
        min_life: Option<u16>,
    },
    Peek {
        key: u8,
    },
    AnswerToken {
        pick: u8,
        life: u16,
    },
    AnswerError {
        pick: u8,
        retry_after: Option<u8>,
        cancelled: bool,
    },
    AnswerTwice {
        pick: u8,
    },
    Invalidate {
        key: u8,
    },
    Advance {
        secs: u16,
    },
    Refresh,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, proptest::option::of(0u16..9000)).prop_map(|(key, min_life)| Op::Poll { key, min_life }),
        2 => (0u8..4).prop_map(|key| Op::Peek { key }),
        3 => (any::<u8>(), 30u16..9000).prop_map(|(pick, life)| Op::AnswerToken { pick, life }),
        2 => (any::<u8>(), proptest::option::of(0u8..120), any::<bool>())
            .prop_map(|(pick, retry_after, cancelled)| Op::AnswerError { pick, retry_after, cancelled }),
        1 => any::<u8>().prop_map(|pick| Op::AnswerTwice { pick }),
        1 => (0u8..4).prop_map(|key| Op::Invalidate { key }),
        3 => (0u16..4000).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Refresh),
    ]
}

fn token(name: u64, now: Timestamp, life: u16) -> AccessToken {
    serde_json::from_value(serde_json::json!({
        "token": format!("crs_{name}"),
        "createdAt": now.to_rfc3339(),
        "expiresAt": now.plus(Duration::from_secs(u64::from(life))).to_rfc3339(),
    }))
    .unwrap()
}

/// The cache's internal records agree with each other.
fn consistent(cache: &TokenCache<u8>) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        cache.recency.len(),
        cache.entries.len(),
        "the recency index holds exactly the keys"
    );
    for (tick, key) in &cache.recency {
        prop_assert_eq!(cache.entries.get(key).map(|e| e.tick), Some(*tick));
    }
    for (id, key) in &cache.in_flight {
        let entry = cache.entries.get(key);
        prop_assert!(
            entry.is_some_and(|e| e.in_flight.is_some_and(|(i, _)| i == *id)),
            "fetch {} for key {} not recorded on its entry",
            id,
            key
        );
    }
    for (key, e) in &cache.entries {
        if let Some((id, _)) = e.in_flight {
            prop_assert_eq!(cache.in_flight.get(&id), Some(key));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>(), cap in 1usize..6) {
        let config = CacheConfig { max_entries: cap, ..CacheConfig::default() };
        let default_min = config.min_remaining;
        let mut cache: TokenCache<u8> = TokenCache::new(config, seed);
        let mut now = Timestamp::from_unix_seconds(1_700_000_000);
        // Outstanding fetches: id -> key. Answered ids.
        let mut outstanding: HashMap<RequestId, u8> = HashMap::new();
        let mut answered: HashSet<RequestId> = HashSet::new();
        let mut names = 0u64;

        for op in ops {
            match op {
                Op::Poll { key, min_life } => {
                    let min = min_life.map(|s| Duration::from_secs(u64::from(s)));
                    match cache.poll(&key, now, min) {
                        Poll::Ready(t) => {
                            // Never a token with less than the asked-for life left.
                            prop_assert!(t.remaining(now) >= min.unwrap_or(default_min));
                        }
                        Poll::Fetch { id } => {
                            // Never two fetches in flight for one key (an abandoned one excepted).
                            let live = outstanding.iter().filter(|(i, k)| **k == key && **i != id && cache.key_of(**i).is_some()).count();
                            prop_assert_eq!(live, 0, "second fetch for key {}", key);
                            prop_assert!(!answered.contains(&id) && !outstanding.contains_key(&id), "id reused");
                            prop_assert_eq!(cache.key_of(id), Some(&key));
                            // The key now shows the fetch; a token it still holds serves only
                            // those who need no more than it has left.
                            match cache.state(&key, now) {
                                TokenState::Fetching => {}
                                TokenState::Refreshing(t) => {
                                    if let Some(u) = cache.token_with_life(&key, now, min.unwrap_or(default_min)) {
                                        prop_assert!(u.same_as(&t));
                                        prop_assert!(u.remaining(now) >= min.unwrap_or(default_min));
                                    }
                                }
                                other => prop_assert!(false, "after a Fetch, key {} is {:?}", key, other),
                            }
                            outstanding.insert(id, key);
                        }
                        Poll::Wait { until } => prop_assert!(until > now),
                        Poll::Failed { retry_at, .. } => prop_assert!(retry_at > now),
                    }
                }
                Op::Peek { key } => {
                    if let Some(t) = cache.ready_token(&key, now, None) {
                        prop_assert!(t.remaining(now) >= default_min);
                    }
                }
                Op::AnswerToken { pick, life } => {
                    if let Some(id) = pick_id(&outstanding, pick) {
                        names += 1;
                        let was_live = cache.key_of(id).is_some();
                        let r = cache.handle_token(id, token(names, now, life), now, 0);
                        // A live fetch's answer is taken (life > 0, so never "already
                        // expired"); an abandoned one's is refused.
                        prop_assert_eq!(r.is_ok(), was_live, "{:?}", r.err());
                        prop_assert!(cache.key_of(id).is_none());
                        outstanding.remove(&id);
                        prop_assert!(answered.insert(id), "answered twice");
                    }
                }
                Op::AnswerError { pick, retry_after, cancelled } => {
                    if let Some(id) = pick_id(&outstanding, pick) {
                        let error = if cancelled {
                            Error::Transport { kind: TransportErrorKind::Cancelled, message: "gone".into() }
                        } else {
                            Error::Server { status: 503, retry_after: retry_after.map(|s| Duration::from_secs(u64::from(s))), api: ApiMessage::default() }
                        };
                        let was_live = cache.key_of(id).is_some();
                        let r = cache.handle_error(id, error, now);
                        prop_assert_eq!(r.is_ok(), was_live);
                        prop_assert!(cache.key_of(id).is_none());
                        outstanding.remove(&id);
                        prop_assert!(answered.insert(id));
                    }
                }
                Op::AnswerTwice { pick } => {
                    // Every request id is answered at most once: a second answer is refused.
                    if let Some(id) = answered.iter().nth(usize::from(pick) % answered.len().max(1)).copied() {
                        names += 1;
                        let twice = cache.handle_token(id, token(names, now, 7200), now, 0);
                        prop_assert!(matches!(twice, Err(Error::UnknownRequest(_))));
                    }
                }
                Op::Invalidate { key } => {
                    if let Some(t) = cache.ready_token(&key, now, Some(Duration::ZERO)) {
                        cache.invalidate(&key, t.secret().expose());
                        prop_assert!(cache.ready_token(&key, now, Some(Duration::ZERO)).is_none());
                    }
                }
                Op::Advance { secs } => now = now.plus(Duration::from_secs(u64::from(secs))),
                Op::Refresh => {
                    while let Some((id, key)) = cache.poll_refresh(now) {
                        prop_assert!(!outstanding.iter().any(|(i, k)| *k == key && cache.key_of(*i).is_some() && *i != id));
                        prop_assert!(!answered.contains(&id) && !outstanding.contains_key(&id), "id reused");
                        outstanding.insert(id, key);
                    }
                    if let Some(t) = cache.poll_timeout(now) {
                        prop_assert!(t > now || cache.poll_refresh(now).is_none());
                    }
                }
            }
            // The cap holds, but for keys with a fetch in flight.
            prop_assert!(cache.len() <= cap + outstanding.len());
            consistent(&cache)?;
        }
    }
}

fn pick_id(outstanding: &HashMap<RequestId, u8>, pick: u8) -> Option<RequestId> {
    let mut ids: Vec<_> = outstanding.keys().copied().collect();
    ids.sort();
    (!ids.is_empty()).then(|| ids[usize::from(pick) % ids.len()])
}
