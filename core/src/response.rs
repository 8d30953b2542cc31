//! Turning `http::Response`s into models or into an [`Error`] that says what to check.

use std::time::Duration;

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, Response};
use serde::de::DeserializeOwned;

use crate::clock::Timestamp;
use crate::error::{ApiMessage, Credential, Error, excerpt};

/// The longest excerpt of a body kept in an error.
const EXCERPT_CHARS: usize = 160;

/// Checks the status and parses a JSON body into `T`.
///
/// `credential` says what authorised the request so a 401 can name what to check.
pub fn parse_json<T: DeserializeOwned>(response: &Response<Vec<u8>>, credential: Credential) -> Result<T, Error> {
    check_status(response, credential)?;
    serde_json::from_slice(response.body()).map_err(|e| malformed(response, e))
}

/// `Ok` for a 2xx status, else the [`Error`] for the status and the error body.
pub fn check_status<B: AsRef<[u8]>>(response: &Response<B>, credential: Credential) -> Result<(), Error> {
    if response.status().is_success() {
        return Ok(());
    }
    Err(status_error(
        response.status().as_u16(),
        response.headers(),
        response.body().as_ref(),
        credential,
        None,
    ))
}

/// The error for a non-success status. `clock_skew` (server minus local, ms) is reported on a
/// 401 to an app-JWT request when it exceeds 30 s.
pub fn status_error(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    credential: Credential,
    clock_skew: Option<i64>,
) -> Error {
    let api = ApiMessage::from_body(body);
    let retry_after = retry_after(headers);
    match status {
        401 => Error::Unauthorized {
            credential,
            clock_skew: clock_skew.filter(|ms| ms.unsigned_abs() > 30_000 && credential == Credential::AppJwt),
            api,
        },
        403 => Error::Forbidden { api },
        404 => Error::NotFound {
            api,
            organization: None,
        },
        429 => Error::RateLimited { retry_after, api },
        500..=599 => Error::Server {
            status,
            retry_after,
            api,
        },
        _ => Error::UnexpectedStatus { status, api },
    }
}

/// `Retry-After` as a duration: delay-seconds, or an HTTP date measured against the response's
/// own `Date` (both on the server's clock). Capped at one day.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = Timestamp::parse_http_date(value)?;
            let date = headers
                .get(DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(Timestamp::parse_http_date)?;
            at.saturating_since(date).as_secs()
        }
    };
    Some(Duration::from_secs(secs.min(86_400)))
}

/// A [`Error::MalformedBody`] for a success response whose body did not parse.
fn malformed(response: &Response<Vec<u8>>, e: serde_json::Error) -> Error {
    let text = String::from_utf8_lossy(response.body());
    let problem = if response.body().is_empty() {
        "the body is empty".to_owned()
    } else if e.is_syntax() || e.is_eof() {
        format!("it is not valid JSON ({})", position(&e))
    } else {
        // serde's data errors name the field and the expected type, and an `invalid type` one
        // quotes the string it found (`invalid type: string "crs_..."`): redact it like the body.
        excerpt(&e.to_string(), 300)
    };
    Error::MalformedBody {
        status: response.status().as_u16(),
        problem,
        excerpt: excerpt(&text, EXCERPT_CHARS),
    }
}

fn position(e: &serde_json::Error) -> String {
    format!("line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::AccessToken;

    fn resp(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn statuses_map_to_actionable_errors() {
        let body = r#"{"statusCode":401,"message":"Invalid token","error":"Unauthorized"}"#;
        let e = check_status(&resp(401, body), Credential::AppJwt).unwrap_err();
        assert!(matches!(
            e,
            Error::Unauthorized {
                credential: Credential::AppJwt,
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.contains("app id") && text.contains("private key") && text.contains("clock"),
            "{text}"
        );
        assert!(text.contains("Invalid token"));
        assert!(matches!(
            check_status(&resp(403, ""), Credential::AccessToken),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            check_status(&resp(404, ""), Credential::AppJwt),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            check_status(&resp(502, "<html>"), Credential::AppJwt),
            Err(Error::Server { status: 502, .. })
        ));
        assert!(matches!(
            check_status(&resp(400, "{}"), Credential::AppJwt),
            Err(Error::UnexpectedStatus { status: 400, .. })
        ));
        assert!(check_status(&resp(204, ""), Credential::AppJwt).is_ok());
    }

    #[test]
    fn extreme_clock_skew_does_not_panic() {
        // Found by `cargo fuzz run responses`: `i64::MIN.abs()` overflowed, here and in Display.
        for skew in [i64::MIN, i64::MAX] {
            let e = status_error(401, &HeaderMap::new(), b"", Credential::AppJwt, Some(skew));
            assert!(matches!(e, Error::Unauthorized { clock_skew: Some(s), .. } if s == skew));
            assert!(e.to_string().contains("fix this machine's clock"), "{e}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let r = Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(Vec::new())
            .unwrap();
        let e = check_status(&r, Credential::AppJwt).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        let r = Response::builder()
            .status(503)
            .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .header("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            check_status(&r, Credential::AppJwt).unwrap_err().retry_after(),
            Some(Duration::from_secs(30))
        );
        let r = Response::builder()
            .status(503)
            .header("retry-after", "soon")
            .body(Vec::new())
            .unwrap();
        assert_eq!(check_status(&r, Credential::AppJwt).unwrap_err().retry_after(), None);
    }

    #[test]
    fn malformed_bodies_never_leak_the_token() {
        let body = r#"{"token":"crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b","expiresAt":"tomorrow"}"#;
        let e = parse_json::<AccessToken>(&resp(200, body), Credential::AppJwt).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, Error::MalformedBody { status: 200, .. }));
        assert!(!text.contains("19c9bd53"), "{text}");
        assert!(text.contains("RFC 3339"), "{text}");
        let e = parse_json::<AccessToken>(&resp(200, "{\"unexpected\": true"), Credential::AppJwt).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = parse_json::<AccessToken>(&resp(200, ""), Credential::AppJwt).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = parse_json::<AccessToken>(&resp(200, "{}"), Credential::AppJwt).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        // Found by `cargo fuzz run responses`: serde quoted a mistyped string in the problem.
        for body in [
            r#""crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b""#,
            r#"{"token":"t","expiresAt":"2022-02-01T00:00:00Z","isActive":"crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b"}"#,
        ] {
            let e = parse_json::<AccessToken>(&resp(200, body), Credential::AppJwt).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains("invalid type: string"), "{text}");
            assert!(!text.contains("19c9bd53"), "{text}");
        }
    }
}
