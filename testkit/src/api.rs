//! The registry's endpoints, answered from [`State`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};

use crate::state::{Installation, IssuedToken, State, permissions_json, rfc3339};

/// The only API version this registry serves.
pub const API_VERSION: &str = "2023-06-16";
/// The most a JWT's `exp` may be ahead of the registry's clock (plus a little leeway).
const MAX_JWT_AHEAD_S: i64 = 600 + 5;
/// How far in the registry's future `iat` may be.
const IAT_LEEWAY_S: i64 = 60;

/// An answer: status, JSON body and extra headers.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }
}

/// A NestJS-style error.
pub(crate) fn error(status: u16, message: impl Into<Value>) -> Reply {
    let error = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    Reply {
        status,
        body: json!({ "statusCode": status, "message": message.into(), "error": error }),
        headers: Vec::new(),
    }
}

pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn bearer(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let (scheme, value) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

pub(crate) fn handle(state: &mut State, req: &Request<'_>) -> Reply {
    if req.header("x-icr-api-version").is_some_and(|v| v != API_VERSION) {
        return error(400, "Unsupported API version");
    }
    let segments: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method, segs.as_slice()) {
        ("POST", ["app", "accessTokens"]) => with_app(state, req, |s, app| mint(s, app, None)),
        ("POST", ["app", "installations", id, "accessTokens"]) => {
            let id = (*id).to_owned();
            with_app(state, req, move |s, app| mint(s, app, Some(&id)))
        }
        ("DELETE", ["app", "installations", "token"]) => revoke(state, req),
        ("GET", ["app", "installations"]) => with_app(state, req, |s, app| list_installations(s, app, req)),
        ("GET", ["app", "installations", id]) => {
            let id = (*id).to_owned();
            with_app(state, req, move |s, app| match find_installation(s, &app, &id) {
                Some(i) => Reply::ok(s.installation_json(i)),
                None => error(404, format!("Installation {id} not found")),
            })
        }
        ("GET", ["app", "organizations", org, "installation"]) => {
            let org = (*org).to_owned();
            with_app(state, req, move |s, app| organization_installation(s, &app, &org))
        }
        ("POST", ["app", "create", "user", "organization"]) => {
            with_app(state, req, |s, app| create_user_organization(s, app, req))
        }
        ("GET", ["projects"]) => with_token(state, req, |_, _| Reply::ok(projects(req))),
        ("GET", ["organizations", id]) => {
            let id = (*id).to_owned();
            with_token(state, req, move |s, token| {
                organization_access(s, token, &id, "organization_info", |org| org.clone())
            })
        }
        ("GET", ["organizations", id, "inventory"]) => {
            let id = (*id).to_owned();
            with_token(state, req, move |s, token| {
                organization_access(
                    s,
                    token,
                    &id,
                    "organization_inventory",
                    |org| json!({ "credits": [], "organizationId": org["id"] }),
                )
            })
        }
        _ => error(404, format!("Cannot {} {}", req.method, req.path)),
    }
}

/// Checks the app JWT, then runs `f` with the app id.
fn with_app(state: &mut State, req: &Request<'_>, f: impl FnOnce(&mut State, String) -> Reply) -> Reply {
    match verify_jwt(state, req.bearer()) {
        Ok(app) => f(state, app),
        Err(reason) => error(401, reason),
    }
}

/// Verifies an app JWT for real: RS256 over the registered public key of `iss`, `exp` in the
/// future and at most 10 minutes ahead, `iat` not in the future.
fn verify_jwt(state: &State, jwt: Option<&str>) -> Result<String, String> {
    let jwt = jwt.ok_or("Missing bearer token")?;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("Malformed JWT".into());
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| "Malformed JWT: bad base64url".to_owned())
    };
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| "Malformed JWT header")?;
    if header["alg"] != "RS256" {
        return Err("JWT algorithm must be RS256".into());
    }
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| "Malformed JWT claims")?;
    let iss = claims["iss"].as_str().ok_or("JWT iss must be the app id as a string")?;
    let app = state.apps.get(iss).ok_or_else(|| "Unknown app (iss)".to_owned())?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &app.public_key)
        .verify(format!("{h}.{c}").as_bytes(), &decode(s)?)
        .map_err(|_| "Invalid JWT signature")?;
    let now = state.now_ms() / 1000;
    let exp = claims["exp"].as_i64().ok_or("JWT exp is missing")?;
    let iat = claims["iat"].as_i64().ok_or("JWT iat is missing")?;
    if exp <= now {
        return Err("JWT expired".into());
    }
    if exp > now + MAX_JWT_AHEAD_S {
        return Err("JWT exp is more than 10 minutes in the future".into());
    }
    if iat > now + IAT_LEEWAY_S {
        return Err("JWT issued in the future (iat)".into());
    }
    Ok(iss.to_owned())
}

fn find_installation<'s>(state: &'s State, app: &str, id: &str) -> Option<&'s Installation> {
    state.installations.get(id).filter(|i| i.app_id == app)
}

/// `GET /app/organizations/{organizationId}/installation`: the app's installation on that
/// organization, counted per organization.
fn organization_installation(state: &mut State, app: &str, org: &str) -> Reply {
    *state.lookups.entry(org.to_owned()).or_default() += 1;
    match state
        .installations
        .values()
        .find(|i| i.app_id == app && i.organization["id"] == org)
    {
        Some(i) => Reply::ok(state.installation_json(i)),
        None => error(404, format!("App is not installed on organization {org}")),
    }
}

fn mint(state: &mut State, app: String, installation: Option<&str>) -> Reply {
    let (permissions, org_id) = match installation {
        Some(id) => match find_installation(state, &app, id) {
            Some(i) => (i.permissions.clone(), i.organization["id"].as_str().map(str::to_owned)),
            None => return error(404, format!("Installation {id} not found")),
        },
        None => (Vec::new(), None),
    };
    let now = state.now_ms();
    let expires = now + state.token_lifetime.as_millis() as i64;
    let token = format!("crs_{}", state.random_hex(24));
    let mut body = json!({
        "id": state.uuid(),
        "createdAt": rfc3339(now),
        "updatedAt": rfc3339(now),
        "token": token,
        "expiresAt": rfc3339(expires),
        "isActive": true,
        "permissions": permissions_json(&permissions),
        "appId": app,
    });
    if let Some(id) = installation {
        body["installationId"] = json!(id);
        body["organizationId"] = json!(org_id);
        *state.installation_mints.entry(id.to_owned()).or_default() += 1;
    } else {
        state.app_mints += 1;
    }
    state.tokens.insert(
        token,
        IssuedToken {
            app_id: app,
            installation: installation.map(str::to_owned),
            expires,
            revoked: false,
        },
    );
    Reply::ok(body)
}

fn revoke(state: &mut State, req: &Request<'_>) -> Reply {
    let now = state.now_ms();
    match req.bearer().and_then(|t| state.tokens.get_mut(t)) {
        Some(t) if !t.revoked && t.expires > now => {
            t.revoked = true;
            Reply::ok(json!({}))
        }
        _ => error(401, "Invalid or expired access token"),
    }
}

fn list_installations(state: &mut State, app: String, req: &Request<'_>) -> Reply {
    let parse = |name: &str, default: u64| match req.query(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("{name} must be a non-negative integer")),
    };
    let (limit, page) = match (parse("limit", 10), parse("page", 0)) {
        (Ok(l), Ok(p)) if (1..=100).contains(&l) => (l, p),
        (Ok(_), Ok(_)) => return error(400, vec![json!("limit must be between 1 and 100")]),
        (Err(e), _) | (_, Err(e)) => return error(400, vec![json!(e)]),
    };
    let mine: Vec<&Installation> = state.installations.values().filter(|i| i.app_id == app).collect();
    let total = mine.len() as u64;
    let page_count = total.div_ceil(limit);
    let items: Vec<Value> = mine
        .iter()
        .skip((page * limit) as usize)
        .take(limit as usize)
        .map(|i| state.installation_json(i))
        .collect();
    Reply::ok(json!({
        "pagination": {
            "total": total,
            "currentPage": page,
            "pageCount": page_count,
            "nextPage": if page + 1 < page_count { json!(page + 1) } else { Value::Null },
            "prevPage": if page > 0 { json!(page - 1) } else { Value::Null },
        },
        "installations": items,
    }))
}

fn create_user_organization(state: &mut State, app: String, req: &Request<'_>) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
        return error(400, vec![json!("body must be JSON")]);
    };
    let mut missing = Vec::new();
    for (path, value) in [
        ("user.email", &body["user"]["email"]),
        ("organization.fullName", &body["organization"]["fullName"]),
        ("organization.type", &body["organization"]["type"]),
    ] {
        if value.as_str().is_none_or(str::is_empty) {
            missing.push(json!(format!("{path} must be a non-empty string")));
        }
    }
    if !missing.is_empty() {
        return error(400, missing);
    }
    let now = state.now_ms();
    let mut org = state.organization(body["organization"]["fullName"].as_str().unwrap_or_default(), now);
    org["type"] = body["organization"]["type"].clone();
    if let Some(cc) = body["organization"]["countryCode"].as_str() {
        org["countryCode"] = json!(cc);
    }
    let installation = Installation {
        id: state.uuid(),
        app_id: app,
        created: now,
        permissions: vec![("organization_info".into(), "VIEW".into())],
        organization: org.clone(),
    };
    let user = json!({
        "id": state.uuid(),
        "email": body["user"]["email"],
        "fullName": body["user"]["fullName"],
        "profilePicture": body["user"]["profilePicture"],
    });
    let installation_json = state.installation_json(&installation);
    state.installations.insert(installation.id.clone(), installation);
    Reply::ok(json!({ "installation": installation_json, "user": user, "organization": org }))
}

/// Checks an access token (app or installation), then runs `f` with it.
fn with_token(state: &mut State, req: &Request<'_>, f: impl FnOnce(&mut State, String) -> Reply) -> Reply {
    let now = state.now_ms();
    let Some(token) = req.bearer() else {
        return error(401, "Missing bearer token");
    };
    match state.tokens.get(token) {
        None => error(401, "Invalid access token"),
        Some(t) if t.revoked => error(401, "Access token revoked"),
        Some(t) if t.expires <= now => error(401, "Access token expired"),
        Some(_) => f(state, token.to_owned()),
    }
}

fn organization_access(
    state: &mut State,
    token: String,
    org_id: &str,
    permission: &str,
    answer: impl FnOnce(&Value) -> Value,
) -> Reply {
    let Some(issued) = state.tokens.get(&token) else {
        return error(401, "Invalid access token");
    };
    let Some(installation) = issued
        .installation
        .as_deref()
        .and_then(|id| state.installations.get(id).filter(|i| i.app_id == issued.app_id))
    else {
        return error(403, "An installation access token is required");
    };
    if installation.organization["id"] != org_id {
        return error(403, "This installation does not belong to that organization");
    }
    if !installation.permissions.iter().any(|(name, _)| name == permission) {
        return error(403, format!("Missing permission {permission}"));
    }
    Reply::ok(answer(&installation.organization))
}

fn projects(req: &Request<'_>) -> Value {
    let limit = req
        .query("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let all: Vec<Value> = (1..=3)
        .map(|n| {
            json!({
                "id": format!("00000000-0000-4000-8000-00000000000{n}"),
                "num": n,
                "fullName": format!("Sample project {n}"),
                "registry": "ICR",
                "status": "validated",
                "countryCode": "IS",
                "publicUrl": format!("https://www.carbonregistry.com/explore/projects/{n}"),
            })
        })
        .take(limit)
        .collect();
    json!({
        "pagination": { "total": all.len(), "currentPage": 0, "pageCount": 1, "nextPage": null, "prevPage": null },
        "projects": all,
    })
}
