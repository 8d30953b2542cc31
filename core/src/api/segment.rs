//! URL path segments: an id percent-encoded so it cannot change the path it goes into.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but unreserved characters is escaped in a path segment, so an id can never add a
/// `/`, `?`, `#` or `%` of its own.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes one path segment (an id) so it cannot change the path.
///
/// ```
/// assert_eq!(icr_app_core::api::encode_segment("a/../b?c"), "a%2F..%2Fb%3Fc");
/// ```
pub fn encode_segment(segment: &str) -> String {
    escaped(segment).into_owned()
}

/// `segment` percent-encoded as [`encode_segment`] does, borrowed when nothing needs escaping
/// (a UUID).
pub(super) fn escaped(segment: &str) -> std::borrow::Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT).into()
}
