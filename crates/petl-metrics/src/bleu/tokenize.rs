//! sacreBLEU's tokenizers (`sacrebleu/tokenizers/tokenizer_13a.py`,
//! `tokenizer_re.py`) and the Python string primitives they rest on.

/// Whether Python's `str.isspace` holds for `c`: Unicode `White_Space` (Rust's
/// `char::is_whitespace`) plus the four ASCII separators U+001C–U+001F, which
/// Python counts because of their bidirectional class.
pub(crate) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no arguments.
pub(crate) fn python_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_whitespace).filter(|t| !t.is_empty())
}

/// Python's `str.rstrip()` with no arguments.
pub(crate) fn python_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_python_whitespace)
}

/// Tokenizes one segment as sacreBLEU's `13a` tokenizer (mteval-v13a.pl, the
/// WMT standard) does, returning the tokens joined by single spaces.
///
/// Steps, in order: drop `<skipped>`, join `-` + newline, newlines to spaces;
/// unescape `&quot; &amp; &lt; &gt;` (in that order); pad every symbol in
/// ``{|}~ [\]^_` !"#$%& ()*+ :;<=>?@ /`` with spaces; split `.` and `,`
/// off unless they sit between digits; split `-` after a digit; collapse
/// whitespace (Python's definition).
///
/// ```
/// use petl_metrics::bleu::tokenize_13a;
///
/// assert_eq!(tokenize_13a("Hello, world! It's 3.14 and 2-3 items."),
///            "Hello , world ! It's 3.14 and 2 - 3 items .");
/// ```
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    // Each pass is one `re.sub` of a two-character pattern: scanning left to
    // right and resuming after each match is exactly Python's semantics.
    let chars = substitute_pairs(
        &chars,
        |a, b| !a.is_ascii_digit() && is_period_or_comma(b),
        |a, b| [a, ' ', b, ' '],
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| is_period_or_comma(a) && !b.is_ascii_digit(),
        |a, b| [' ', a, ' ', b],
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b| [a, ' ', b, ' '],
    );
    let joined: String = chars.into_iter().collect();
    python_split(&joined).collect::<Vec<_>>().join(" ")
}

/// The first 13a regex's class `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// Replaces each non-overlapping, leftmost pair `(a, b)` with `matches(a, b)`
/// by `replace(a, b)`.
fn substitute_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        match chars.get(i + 1) {
            Some(&b) if matches(chars[i], b) => {
                out.extend(replace(chars[i], b));
                i += 2;
            }
            _ => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_commas_between_digits_stay() {
        assert_eq!(tokenize_13a("1,000.5 people."), "1,000.5 people .");
        assert_eq!(tokenize_13a("a.. b,,"), "a . . b , ,");
    }

    #[test]
    fn entities_are_unescaped_in_order() {
        // &amp;lt; → &lt; → <, because &amp; is replaced before &lt;.
        assert_eq!(tokenize_13a("&amp;lt;"), "<");
    }

    #[test]
    fn python_whitespace_includes_file_separators() {
        assert!(is_python_whitespace('\u{1c}'));
        assert!(is_python_whitespace('\u{3000}'));
        assert!(!is_python_whitespace('\u{200b}'));
        assert_eq!(python_rstrip("a \u{1f}\t"), "a");
        assert_eq!(python_split(" a\u{a0}b  ").collect::<Vec<_>>(), ["a", "b"]);
    }
}
