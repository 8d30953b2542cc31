//! PEM text: undoing what copying does to it, and finding its blocks.

use zeroize::Zeroizing;

/// Undoes what copying a PEM through environment variables, `.env` files and Windows does:
/// byte-order mark, surrounding quotes, literal `\n`/`\r` escapes, CR line ends.
pub(super) fn normalise(text: &str) -> Zeroizing<String> {
    let mut t = text.trim_start_matches('\u{feff}').trim();
    for quote in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(quote) && t.ends_with(quote) {
            t = t[1..t.len() - 1].trim();
        }
    }
    let mut out = Zeroizing::new(String::with_capacity(t.len()));
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A PEM never holds a backslash: `\n` and `\r` are escaped line breaks, others are dropped.
            '\\' => {
                if matches!(chars.peek(), Some('n' | 'r')) {
                    chars.next();
                    out.push('\n');
                }
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// One PEM block: its label and the text between the BEGIN and END lines (`None` when the END
/// line is missing or does not match).
pub(super) struct Block<'a> {
    pub(super) label: &'a str,
    pub(super) body: Option<&'a str>,
}

/// Every `-----BEGIN X-----` ... `-----END X-----` block in `text`, ignoring text around them.
pub(super) fn pem_blocks(text: &str) -> Vec<Block<'_>> {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "-----END";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        let after = &rest[i + BEGIN.len()..];
        let line = &after[..after.find('\n').unwrap_or(after.len())];
        let Some(dash) = line.find(DASHES) else {
            // A BEGIN line without its closing dashes: the armour is cut.
            blocks.push(Block {
                label: line.trim().trim_end_matches('-').trim(),
                body: None,
            });
            break;
        };
        let label = line[..dash].trim();
        let inner = &after[dash + DASHES.len()..];
        let Some(j) = inner.find(END) else {
            blocks.push(Block { label, body: None });
            break;
        };
        let body = &inner[..j];
        if let Some(k) = body.find(BEGIN) {
            // Another block starts before this one ends: this one is cut.
            blocks.push(Block { label, body: None });
            rest = &body[k..];
            continue;
        }
        let end_line = &inner[j + END.len()..];
        let (end_label, next) = match end_line.find(DASHES) {
            Some(d) => (end_line[..d].trim(), &end_line[d + DASHES.len()..]),
            None => ("", ""),
        };
        let body = (end_label == label).then_some(body);
        blocks.push(Block { label, body });
        rest = next;
    }
    blocks
}

/// A PEM label made safe to print: letters, digits, spaces and dashes, at most 64 characters.
///
/// A real label is a few short words (`RSA PRIVATE KEY`). A word of 16 or more characters is
/// key material that ended up on the `-----BEGIN` line (a PEM flattened onto one line with its
/// dashes damaged), so the label is cut before it, marked `…`, and no key material is shown.
pub(super) fn printable_label(label: &str) -> String {
    let clean: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .collect();
    let words: Vec<&str> = clean.split(' ').filter(|w| !w.is_empty()).collect();
    let short = words.iter().take_while(|w| w.len() < 16).count();
    let mut out: String = words[..short].join(" ").chars().take(64).collect();
    if short < words.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_line_ends_are_normalised() {
        assert_eq!(&*normalise("\"a\\nb\\r\\nc\r\nd\""), "a\nb\n\nc\n\nd");
        assert_eq!(&*normalise("\u{feff}  'x'  "), "x");
    }

    #[test]
    fn labels_never_show_key_material() {
        // Found by `cargo fuzz run keys`: key text on a BEGIN line whose dashes were damaged
        // became the label, and up to 64 characters of it were printed.
        assert_eq!(printable_label("RSA PRIVATE KEY"), "RSA PRIVATE KEY");
        assert_eq!(
            printable_label("PRIVATE KEY--t1snGN5bhGgEweTuU1TxmKSz2nrX6MlxaBeH"),
            "PRIVATE…"
        );
        assert_eq!(
            printable_label("RSA PRIVATE KEY MIIEpAIBAAKCAQEAx/y+z Q"),
            "RSA PRIVATE KEY…"
        );
        assert_eq!(printable_label("MIIEpAIBAAKCAQEAx"), "…");
        assert_eq!(printable_label(" A\u{1b}[31mB  "), "A31mB");
    }

    #[test]
    fn blocks_are_found_and_cut_blocks_marked() {
        let text = "junk\n-----BEGIN A-----\nQUJD\n-----END A-----\n-----BEGIN B-----\nxx";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].label, blocks[0].body), ("A", Some("\nQUJD\n")));
        assert_eq!((blocks[1].label, blocks[1].body), ("B", None));
        let mismatched = pem_blocks("-----BEGIN A-----\nQUJD\n-----END B-----");
        assert_eq!(mismatched[0].body, None);
    }
}
