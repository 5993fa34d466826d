//! rouge-score's default tokenizer (`rouge_score/tokenize.py`).

use crate::porter::porter_stem;

/// Splits `text` into ROUGE tokens as rouge-score's `DefaultTokenizer` does.
///
/// The text is lowercased (Unicode, as Python's `str.lower`), every run of
/// characters outside `[a-z0-9]` separates tokens (so accented and non-Latin
/// letters are separators, exactly as in rouge-score), and with `use_stemmer`
/// tokens longer than three characters are reduced by [`porter_stem`].
///
/// ```
/// use petl_metrics::rouge::tokenize;
///
/// assert_eq!(tokenize("The 1990s' runners ran!", false), ["the", "1990s", "runners", "ran"]);
/// assert_eq!(tokenize("The 1990s' runners ran!", true), ["the", "1990", "runner", "ran"]);
/// assert_eq!(tokenize("Café", false), ["caf"]);
/// ```
pub fn tokenize(text: &str, use_stemmer: bool) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| {
            if use_stemmer && t.len() > 3 {
                porter_stem(t)
            } else {
                t.to_owned()
            }
        })
        // rouge-score re-checks tokens after stemming; a stem of an
        // alphanumeric word is alphanumeric, so only emptiness can fail.
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_case() {
        assert_eq!(
            tokenize("  Hello,WORLD--x_y  ", false),
            ["hello", "world", "x", "y"]
        );
        assert!(tokenize("...!!! ¿¡", true).is_empty());
        assert!(tokenize("", true).is_empty());
    }

    #[test]
    fn only_long_tokens_are_stemmed() {
        // "ties" (4) is stemmed to "tie"; "was" (3) would become "wa" if it were.
        assert_eq!(tokenize("was ties", true), ["was", "tie"]);
    }

    #[test]
    fn uppercase_with_ascii_lowercase_survives() {
        // U+0130 lowercases to "i" + combining dot, U+212A (Kelvin) to "k".
        assert_eq!(tokenize("İstanbul \u{212a}", false), ["i", "stanbul", "k"]);
    }
}
