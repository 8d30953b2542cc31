//! The request builders: every documented app endpoint as an `http::Request<Vec<u8>>` made from
//! the [`ApiConfig`], and [`authorize`] for any other request.

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::uri::{Parts, PathAndQuery};
use http::{Method, Request, Uri};

use super::id::check_id;
use super::segment::escaped;
use super::{ApiConfig, InstallationId, OrganizationId, encode_segment};
use crate::error::Error;
use crate::models::CreateUserOrganization;
use crate::secret::SecretString;

impl ApiConfig {
    /// A request for `path_and_query` (which must start with `/`) relative to the base URL, with
    /// the standard headers and, when there is a body, `content-type: application/json`.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, Error> {
        if !path_and_query.starts_with('/') {
            return Err(Error::config(
                "request path",
                format!("`{}` must start with `/`", crate::redact::excerpt(path_and_query, 80)),
            ));
        }
        self.request_to(method, &[path_and_query], body)
    }

    /// A request for the path made of `path` (joined, starting with `/`) relative to the base
    /// URL, with the standard headers: the path is written once, at its size, and put together
    /// with the base URL's scheme and authority parsed with the config; the headers are copied
    /// from the config's into a map made at its final size (room for `content-type` and
    /// `Authorization`, so neither grows it).
    fn request_to(&self, method: Method, path: &[&str], body: Option<Vec<u8>>) -> Result<Request<Vec<u8>>, Error> {
        let prefix = &self.base_url[self.path_at..];
        let mut path_and_query = String::with_capacity(prefix.len() + path.iter().map(|p| p.len()).sum::<usize>());
        path_and_query.push_str(prefix);
        path.iter().for_each(|p| path_and_query.push_str(p));
        let uri = self.uri(path_and_query).ok_or_else(|| {
            Error::config(
                "request path",
                format!(
                    "`{}` is not a valid path; percent-encode ids with encode_segment",
                    crate::redact::excerpt(&path.concat(), 80)
                ),
            )
        })?;
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        headers.extend(self.headers.iter().map(|(name, value)| (name.clone(), value.clone())));
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut request = Request::new(body.unwrap_or_default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// The base URL's scheme and authority with `path_and_query` (the base URL's path first);
    /// `None` when it is not a valid path, or the whole URL is longer than `Uri` allows.
    fn uri(&self, path_and_query: String) -> Option<Uri> {
        // `Uri`'s own limit on a whole URL, which parsing one checks and `from_parts` does not.
        const MAX_URI_LEN: usize = u16::MAX as usize - 1;
        if self.path_at + path_and_query.len() > MAX_URI_LEN {
            return None;
        }
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
        Uri::from_parts(parts).ok()
    }

    /// The mint request for an installation's token (`Some`) or the app's (`None`), with
    /// `bearer` (a value from [`bearer`]) as its `Authorization`.
    pub(crate) fn mint_request(
        &self,
        installation: Option<&InstallationId>,
        bearer: HeaderValue,
    ) -> Result<Request<Vec<u8>>, Error> {
        let body = Some(b"{}".to_vec());
        let mut request = match installation {
            None => self.request_to(Method::POST, &["/app/accessTokens"], body),
            Some(id) => self.request_to(
                Method::POST,
                &["/app/installations/", &escaped(id.as_str()), "/accessTokens"],
                body,
            ),
        }?;
        request.headers_mut().insert(AUTHORIZATION, bearer);
        Ok(request)
    }

    /// `POST /app/accessTokens` (app JWT): mint an app access token.
    pub fn app_access_token(&self, jwt: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.mint_request(None, bearer(jwt)?)
    }

    /// `POST /app/installations/{installationId}/accessTokens` (app JWT): mint an installation
    /// access token.
    pub fn installation_access_token(
        &self,
        jwt: &SecretString,
        installation: &InstallationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        self.mint_request(Some(installation), bearer(jwt)?)
    }

    /// `DELETE /app/installations/token`, authorised with the access token to revoke.
    pub fn revoke_token(&self, token: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.authorized(Method::DELETE, "/app/installations/token", None, token)
    }

    /// `GET /app/installations?limit=L&page=P` (app JWT): one page of the app's installations.
    pub fn list_installations(&self, jwt: &SecretString, limit: u32, page: u32) -> Result<Request<Vec<u8>>, Error> {
        if limit == 0 {
            return Err(Error::config("page size", "limit must be at least 1"));
        }
        self.authorized(
            Method::GET,
            &format!("/app/installations?limit={limit}&page={page}"),
            None,
            jwt,
        )
    }

    /// `GET /app/installations/{installationId}` (app JWT): one installation.
    pub fn get_installation(
        &self,
        jwt: &SecretString,
        installation: &InstallationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        let path = format!("/app/installations/{}", encode_segment(installation.as_str()));
        self.authorized(Method::GET, &path, None, jwt)
    }

    /// `POST /app/create/user/organization` (app JWT): create a user and an organization with
    /// the app installed.
    pub fn create_user_organization(
        &self,
        jwt: &SecretString,
        body: &CreateUserOrganization,
    ) -> Result<Request<Vec<u8>>, Error> {
        if body.user.email.trim().is_empty()
            || body.organization.full_name.trim().is_empty()
            || body.organization.kind.trim().is_empty()
        {
            return Err(Error::config(
                "new user and organization",
                "user.email, organization.fullName and organization.type are required",
            ));
        }
        let json = serde_json::to_vec(body).map_err(|e| Error::config("new user and organization", e.to_string()))?;
        self.authorized(Method::POST, "/app/create/user/organization", Some(json), jwt)
    }

    /// `GET /app/organizations/{organizationId}/installation` (app JWT): the app's installation
    /// on that organization (a 404 when the app is not installed there).
    pub fn get_organization_installation(
        &self,
        jwt: &SecretString,
        organization: &OrganizationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        let path = format!(
            "/app/organizations/{}/installation",
            encode_segment(organization.as_str())
        );
        self.authorized(Method::GET, &path, None, jwt)
    }

    /// `GET /organizations/{id}` (installation token): the organization.
    pub fn get_organization(&self, token: &SecretString, organization_id: &str) -> Result<Request<Vec<u8>>, Error> {
        check_id("organization id", organization_id)?;
        self.authorized(
            Method::GET,
            &format!("/organizations/{}", encode_segment(organization_id)),
            None,
            token,
        )
    }

    /// Any request relative to the base URL, authorised with `credential`.
    pub fn authorized(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        credential: &SecretString,
    ) -> Result<Request<Vec<u8>>, Error> {
        let mut request = self.request(method, path_and_query, body)?;
        authorize(&mut request, credential)?;
        Ok(request)
    }
}

/// Sets `Authorization: Bearer <credential>` (marked sensitive, so HTTP stacks that honour it
/// will not log it) on a request built elsewhere, replacing any earlier one.
pub fn authorize<B>(request: &mut Request<B>, credential: &SecretString) -> Result<(), Error> {
    request.headers_mut().insert(AUTHORIZATION, bearer(credential)?);
    Ok(())
}

/// `Bearer <credential>` as an `Authorization` value, marked sensitive.
pub(crate) fn bearer(credential: &SecretString) -> Result<HeaderValue, Error> {
    // Sized exactly: `format!` would grow the string several times for an 800-byte JWT.
    let mut bearer = String::with_capacity(7 + credential.expose().len());
    bearer.push_str("Bearer ");
    bearer.push_str(credential.expose());
    let mut value = HeaderValue::try_from(bearer).map_err(|_| {
        Error::config(
            "token",
            "it contains characters not allowed in an HTTP header; pass the token exactly as issued",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}
