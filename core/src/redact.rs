//! Excerpts of outside text that are safe to put in a message: token-like runs redacted.

/// The first `max` characters of `text` with token-like runs replaced by `[redacted]`.
///
/// A run of at least 16 characters from the base64/base64url/hex alphabets that is not a UUID
/// (tokens, JWT parts, key material) is redacted, so an excerpt of a response body never carries
/// a secret into an error message or a log. So is a run of any length that starts as an access
/// token (`crs_`) or a JWT (`eyJ`) does: a body cut short can end in a token's first characters.
/// A run of lowercase letters and `_` alone (a permission name such as
/// `organization_inventory`, an identifier) is kept: tokens, JWT parts and key text always hold
/// digits or capitals.
pub fn excerpt(text: &str, max: usize) -> String {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | '=' | '~');
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let identifier = run.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        let secret_prefix = run.starts_with("crs_") || run.starts_with("eyJ");
        if secret_prefix || (run.chars().count() >= 16 && !is_uuid(run) && !identifier) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_tok(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
        if out.chars().count() >= max {
            break;
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
    }
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
