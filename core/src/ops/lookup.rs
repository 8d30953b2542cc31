//! [`Lookup`]: finding the app's installation on an organization, for a
//! [`GetToken`](super::GetToken) that named the organization and found no installation
//! remembered for it (the app's single flight made it the one to look).
//!
//! Without a shared store: ask the registry (`GET /app/organizations/{id}/installation`, a
//! [`Call`] with its retries).
//!
//! With one, as a fetch shares a mint: read the organization's entry, and use the installation
//! it names unless this process found that installation gone; otherwise take the entry's lease,
//! read the entry once more (another process may have put it and released the lease in
//! between), ask the registry, and put its answer in the entry, releasing the lease. A lease
//! held by another process means: read the entry again after a short back-off, until the
//! holder's answer appears or its lease lapses. Any store failure means asking the registry
//! alone, without an error. A 404 is the caller's error, and says the app is not installed
//! there (the lease is released, so another process may ask at once).

use std::time::Duration;

use http::Response;

use super::call::Call;
use super::fetch::LeaseWait;
use super::{Operation, RequestId, Step};
use crate::api::{InstallationId, OrganizationId};
use crate::app::{App, TokenScope};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::models::Installation;
use crate::stats::Counter;
use crate::store::{ORGANIZATION_TTL, StoreCommand, StoreReply};

/// What a lookup asks for next: the installation, as the token cache's key (remembered for the
/// organization), or why there is none (recorded for the operations that waited).
pub(crate) type LookupStep = Step<TokenScope>;

#[derive(Debug)]
enum State {
    Start,
    /// Reading the organization's entry; `leased`: this process holds its lease.
    Loading {
        id: RequestId,
        leased: bool,
    },
    /// Take the entry's lease next.
    Lease,
    Leasing(RequestId),
    /// The lease is ours: read the entry once more next.
    Recheck,
    /// Another process holds the lease: read the entry again then.
    Waiting(Timestamp),
    /// Ask the registry next; `leased`: this process holds the lease.
    Call {
        leased: bool,
    },
    Calling {
        call: Box<Call<Installation>>,
        leased: bool,
    },
    /// Release the lease next (the entry was read after all), then end so.
    Release(Result<TokenScope, Error>),
    /// Telling the store (the registry's answer put, or the lease released), then ending so.
    Storing(RequestId, Result<TokenScope, Error>),
    /// Ends at the next poll, so.
    Ending(Result<TokenScope, Error>),
    Finished,
}

/// One lookup of `organization`'s installation, as the app's lookup `id`. See the module docs.
#[derive(Debug)]
pub(crate) struct Lookup {
    id: RequestId,
    organization: OrganizationId,
    state: State,
    /// Its waits for another process's lookup.
    lease_wait: LeaseWait,
}

impl Lookup {
    pub(crate) fn new(id: RequestId, organization: OrganizationId) -> Self {
        Self {
            id,
            organization,
            state: State::Start,
            lease_wait: LeaseWait::default(),
        }
    }

    fn scope(&self) -> TokenScope {
        TokenScope::Organization(self.organization.clone())
    }

    pub(crate) fn poll(&mut self, app: &mut App, now: Timestamp) -> LookupStep {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Start => self.load(app, now, false),
            State::Waiting(until) if now < until => {
                self.state = State::Waiting(until);
                LookupStep::Sleep { until }
            }
            State::Waiting(_) => self.load(app, now, false),
            State::Lease => match app.store(now) {
                Some(shared) => {
                    let command = StoreCommand::Lease {
                        key: shared.sealer.lease(&self.scope()),
                        owner: shared.sealer.owner().to_vec(),
                        ttl: shared.settings.lease_ttl,
                    };
                    self.send_store(app, command, State::Leasing)
                }
                None => self.call(app, now, false),
            },
            State::Recheck => self.load(app, now, true),
            // Polled again without a reply: the driver gave the command up. Ask the registry.
            State::Loading { leased, .. } => self.call(app, now, leased),
            State::Leasing(_) => self.call(app, now, false),
            State::Call { leased } => self.call(app, now, leased),
            State::Calling { mut call, leased } => {
                let step = match call.poll(app, now).pass() {
                    Ok(effect) => effect,
                    Err(Ok(installation)) => {
                        let found = app.organization_found(&self.organization, Some(self.id), &installation.id);
                        return self.tell_store(app, now, leased, true, found);
                    }
                    Err(Err(error)) => {
                        app.organization_failed(&self.organization, self.id, &error);
                        return self.tell_store(app, now, leased, false, Err(error));
                    }
                };
                self.state = State::Calling { call, leased };
                step
            }
            State::Release(result) => self.tell_store(app, now, true, false, result),
            // Answered or not, the lookup is done: the store only keeps it for others.
            State::Storing(_, result) | State::Ending(result) => LookupStep::Done(result),
            State::Finished => LookupStep::Done(Err(Error::config(
                "operation",
                "the lookup already finished; this is a bug in the core",
            ))),
        }
    }

    /// Sends `command`, in the state `waiting` makes of its id.
    fn send_store(
        &mut self,
        app: &mut App,
        command: StoreCommand,
        waiting: impl FnOnce(RequestId) -> State,
    ) -> LookupStep {
        let id = app.next_request_id();
        self.state = waiting(id);
        LookupStep::Store { id, command }
    }

    /// Reads the organization's entry, else asks the registry.
    fn load(&mut self, app: &mut App, now: Timestamp, leased: bool) -> LookupStep {
        let Some(shared) = app.store(now) else {
            return self.call(app, now, leased);
        };
        let command = StoreCommand::Get {
            key: shared.sealer.entry(&self.scope()),
        };
        self.send_store(app, command, |id| State::Loading { id, leased })
    }

    fn call(&mut self, app: &mut App, now: Timestamp, leased: bool) -> LookupStep {
        let call = Box::new(Call::installation_for_organization(self.organization.clone()));
        self.state = State::Calling { call, leased };
        self.poll(app, now)
    }

    /// After asking the registry: the installation found is `put` in the entry (releasing the
    /// lease); a failure, or an entry read after all (not `put`), releases the lease, so another
    /// process may go on at once.
    fn tell_store(
        &mut self,
        app: &mut App,
        now: Timestamp,
        leased: bool,
        put: bool,
        result: Result<TokenScope, Error>,
    ) -> LookupStep {
        let Some(shared) = app.store(now) else {
            return LookupStep::Done(result);
        };
        let scope = self.scope();
        let entry = shared.sealer.entry(&scope);
        let lease = shared.sealer.lease(&scope);
        let owner = shared.sealer.owner().to_vec();
        let sealed = match &result {
            Ok(TokenScope::Installation(id)) if put => shared.sealer.seal_installation(&entry, id),
            _ => None,
        };
        let command = match sealed {
            Some(value) => StoreCommand::Put {
                key: entry,
                value,
                ttl: ORGANIZATION_TTL,
                lease,
                owner,
            },
            None if leased => StoreCommand::Delete {
                key: lease,
                prefix: owner,
            },
            None => return LookupStep::Done(result),
        };
        self.send_store(app, command, |id| State::Storing(id, result))
    }
    pub(crate) fn handle_response(
        &mut self,
        app: &mut App,
        id: RequestId,
        response: Response<Vec<u8>>,
        now: Timestamp,
    ) {
        if let State::Calling { call, .. } = &mut self.state {
            call.handle_response(app, id, response, now);
        }
    }

    pub(crate) fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if let State::Calling { call, .. } = &mut self.state {
            call.handle_failure(app, id, error, now);
        }
    }

    pub(crate) fn handle_store(
        &mut self,
        app: &mut App,
        id: RequestId,
        reply: Result<StoreReply, Error>,
        now: Timestamp,
    ) {
        let own = match &self.state {
            State::Loading { id: own, .. } | State::Leasing(own) | State::Storing(own, _) => *own,
            _ => return,
        };
        if own != id {
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Finished);
        let reply = match reply {
            Ok(reply) => {
                app.store_answered();
                reply
            }
            Err(error) => {
                app.store_failed(&error, now);
                self.state = match state {
                    State::Storing(_, result) => State::Ending(result),
                    // Asked for at the next poll, without the store (a lease held lapses).
                    _ => State::Call { leased: false },
                };
                return;
            }
        };
        self.state = match (state, reply) {
            (State::Storing(_, result), _) => State::Ending(result),
            (State::Loading { leased, .. }, StoreReply::Value(value)) => {
                match value.and_then(|v| self.usable(app, &v, now)) {
                    Some(installation) => {
                        let found = app.organization_found(&self.organization, Some(self.id), installation.as_str());
                        if found.is_ok() {
                            app.count(Counter::SharedLookup);
                        }
                        if leased {
                            State::Release(found)
                        } else {
                            State::Ending(found)
                        }
                    }
                    None if leased => State::Call { leased },
                    None => State::Lease,
                }
            }
            (State::Leasing(_), StoreReply::Leased(true)) => State::Recheck,
            (State::Leasing(_), StoreReply::Leased(false)) => self.someone_else_looks(app, now),
            (_, reply) => {
                let error = Error::config(
                    "shared token store",
                    format!("the store driver answered {reply:?} out of turn"),
                );
                app.store_failed(&error, now);
                State::Call { leased: false }
            }
        };
    }

    /// The installation named by a value read from the organization's entry, if it can be
    /// used: sealed for this entry with this app's key, and not the one this process found gone.
    fn usable(&self, app: &App, value: &[u8], now: Timestamp) -> Option<InstallationId> {
        let shared = app.store(now)?;
        let id = shared
            .sealer
            .open_installation(&shared.sealer.entry(&self.scope()), value)?;
        (app.stale_installation(&self.organization) != Some(&id)).then_some(id)
    }

    /// Another process holds the lease: read the entry again after a short wait; after twice
    /// the lease's time, ask the registry alone.
    fn someone_else_looks(&mut self, app: &App, now: Timestamp) -> State {
        let lease_ttl = app.store(now).map_or(Duration::ZERO, |s| s.settings.lease_ttl);
        match self.lease_wait.next(lease_ttl) {
            Some(wait) => State::Waiting(now.plus(wait)),
            None => State::Call { leased: false },
        }
    }

    /// The driver leaves: the lookup is released, so another operation may look at once (a
    /// lease this process holds lapses by itself).
    pub(crate) fn abandon(&mut self, app: &mut App, now: Timestamp) {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Calling { mut call, .. } => {
                call.abandon(app, now);
                app.cancel_lookup(&self.organization, self.id);
            }
            State::Storing(..) | State::Ending(_) | State::Release(_) | State::Finished => {}
            _ => app.cancel_lookup(&self.organization, self.id),
        }
    }
}
