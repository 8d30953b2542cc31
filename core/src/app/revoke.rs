//! Tokens the registry no longer takes: one it refused ([`App::invalidate`]), and revocation
//! (the cache drained on shutdown, the revoke request and its answer).

use http::{Request, Response};

use super::{App, TokenScope};
use crate::cache::Token;
use crate::clock::Timestamp;
use crate::error::{Credential, Error};
use crate::response::check_status;
use crate::secret::SecretString;

impl App {
    /// Drops `scope`'s cached token if it is `token` (the registry just refused it); a newer
    /// token is kept. With a shared store attached, that token is also never read back from the
    /// store's entry (another process may not have learned yet that it is refused).
    ///
    /// For an organization, the token is dropped from its installation's entry.
    pub fn invalidate(&mut self, scope: &TokenScope, token: &str) -> bool {
        let Some(key) = self.cache_key(scope).cloned() else {
            return false;
        };
        let dropped = self.cache.invalidate(&key, token);
        if dropped && let Some(shared) = &mut self.shared {
            let prefix = shared.sealer.token_prefix(&SecretString::new(token));
            shared.refused.insert(key, prefix);
        }
        dropped
    }

    /// Empties the cache, returning every token that was cached (to revoke them on shutdown
    /// with [`revoke_request`](Self::revoke_request)).
    pub(crate) fn drain_tokens(&mut self) -> Vec<(TokenScope, Token)> {
        self.mints.clear();
        self.cache.drain()
    }

    /// `DELETE /app/installations/token` for `token`.
    pub(crate) fn revoke_request(&self, token: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.api.revoke_token(token)
    }

    /// Reads the answer to revoking `token` (any 2xx is success; the body is not documented). On
    /// success, or a 401 (the token was already invalid), the token is dropped from the cache;
    /// the scopes that held it are returned with the result.
    pub(crate) fn finish_revoke(
        &mut self,
        token: &SecretString,
        response: &Response<Vec<u8>>,
        now: Timestamp,
    ) -> (Result<(), Error>, Vec<TokenScope>) {
        self.observe(response, now);
        let result = check_status(response, Credential::AccessToken);
        let mut held = Vec::new();
        if result.is_ok() || response.status() == http::StatusCode::UNAUTHORIZED {
            held = self.cache.invalidate_everywhere(token.expose());
        }
        (result, held)
    }
}
