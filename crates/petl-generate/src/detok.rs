//! Turning a stream of tokens into a stream of text.

/// The replacement character a byte-level decoder emits for an incomplete UTF-8 sequence.
const REPLACEMENT: char = '\u{FFFD}';

/// Yields the new text each token adds, given a function that decodes a whole token slice.
///
/// Decoding tokens one at a time is wrong for most tokenizers: byte-level BPE splits characters
/// across tokens, and SentencePiece drops the leading space of a slice's first token. This keeps
/// a short window of tokens, decodes the window with and without the newest tokens, and returns
/// the difference (the method of text-generation-inference's `decode_token`). Text ending in
/// U+FFFD (an incomplete character) is held back until a later token completes it or
/// [`finish`](Self::finish) flushes it.
///
/// ```
/// use petl_generate::IncrementalDetokenizer;
///
/// // A byte-level vocabulary: each token is one byte; "é" is two bytes.
/// let decode = |ids: &[u32]| String::from_utf8_lossy(&ids.iter().map(|&t| t as u8).collect::<Vec<_>>()).into_owned();
/// let mut detok = IncrementalDetokenizer::new(decode);
/// let pieces: Vec<String> = "aé!".bytes().map(|b| detok.push(u32::from(b))).collect();
/// assert_eq!(pieces, ["a", "", "é", "!"]);
/// assert_eq!(detok.finish(), "");
/// ```
pub struct IncrementalDetokenizer<F> {
    decode: F,
    /// The window: tokens from the start of the previous emitted piece on.
    tokens: Vec<u32>,
    /// Tokens before this index are context for the next piece's first token.
    prefix_offset: usize,
    /// Tokens before this index have had their text returned.
    read_offset: usize,
}

impl<F: Fn(&[u32]) -> String> IncrementalDetokenizer<F> {
    /// A detokenizer with no context.
    pub fn new(decode: F) -> Self {
        Self {
            decode,
            tokens: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// A detokenizer whose output continues `context` (e.g. the last few prompt tokens), whose text
    /// is never returned; it gives the first generated token its leading space where a tokenizer
    /// decides that from the token before.
    pub fn with_context(decode: F, context: &[u32]) -> Self {
        Self {
            decode,
            tokens: context.to_vec(),
            prefix_offset: 0,
            read_offset: context.len(),
        }
    }

    /// Adds one token and returns the text it completes (often empty while a character is split).
    pub fn push(&mut self, token: u32) -> String {
        self.tokens.push(token);
        self.emit(false)
    }

    /// Returns whatever text is still held back (an incomplete character decodes as U+FFFD).
    pub fn finish(&mut self) -> String {
        self.emit(true)
    }

    fn emit(&mut self, flush: bool) -> String {
        let before = (self.decode)(&self.tokens[self.prefix_offset..self.read_offset]);
        let after = (self.decode)(&self.tokens[self.prefix_offset..]);
        let piece = text_after(&before, &after);
        if piece.is_empty() || (!flush && piece.ends_with(REPLACEMENT)) {
            return String::new();
        }
        let piece = piece.to_owned();
        // Keep only the tokens of the piece just emitted as context for the next one.
        self.tokens.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = self.tokens.len();
        piece
    }
}

/// The part of `after` past `before`; if decoding changed earlier text (it should not), the part
/// past their longest common prefix.
fn text_after<'a>(before: &str, after: &'a str) -> &'a str {
    if let Some(rest) = after.strip_prefix(before) {
        return rest;
    }
    let common: usize = before
        .char_indices()
        .zip(after.chars())
        .take_while(|((_, a), b)| a == b)
        .map(|((_, a), _)| a.len_utf8())
        .sum();
    &after[common..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy SentencePiece-like vocabulary: "▁" marks a word start; a slice's first piece loses it.
    fn sp_decode(ids: &[u32]) -> String {
        const VOCAB: [&str; 4] = ["▁Hello", "▁world", "!", "▁a"];
        let text: String = ids
            .iter()
            .map(|&i| VOCAB[i as usize])
            .collect::<String>()
            .replace('▁', " ");
        text.strip_prefix(' ').map(str::to_owned).unwrap_or(text)
    }

    fn bytes_decode(ids: &[u32]) -> String {
        String::from_utf8_lossy(&ids.iter().map(|&t| t as u8).collect::<Vec<_>>()).into_owned()
    }

    #[test]
    fn pieces_concatenate_to_the_full_decode() {
        let ids = [0, 1, 2, 3, 1];
        let mut detok = IncrementalDetokenizer::new(sp_decode);
        let text: String = ids.iter().map(|&t| detok.push(t)).collect::<String>() + &detok.finish();
        assert_eq!(text, sp_decode(&ids));
        assert_eq!(text, "Hello world! a world");
    }

    #[test]
    fn context_gives_the_first_token_its_space() {
        let mut detok = IncrementalDetokenizer::with_context(sp_decode, &[0]);
        assert_eq!(detok.push(1), " world");
        let mut bare = IncrementalDetokenizer::new(sp_decode);
        assert_eq!(bare.push(1), "world");
    }

    #[test]
    fn split_characters_are_held_back_then_flushed() {
        let bytes = "a€😀".as_bytes().to_vec();
        let mut detok = IncrementalDetokenizer::new(bytes_decode);
        let pieces: Vec<String> = bytes.iter().map(|&b| detok.push(u32::from(b))).collect();
        assert_eq!(pieces, ["a", "", "", "€", "", "", "", "😀"]);
        // a dangling lead byte is only released by finish()
        assert_eq!(detok.push(0xE2), "");
        assert_eq!(detok.finish(), "\u{FFFD}");
        assert_eq!(detok.finish(), "");
    }

    #[test]
    fn replacement_not_at_the_end_is_released() {
        let mut detok = IncrementalDetokenizer::new(bytes_decode);
        assert_eq!(detok.push(0xFF), "");
        assert_eq!(detok.push(u32::from(b'x')), "\u{FFFD}x");
    }

    #[test]
    fn window_stays_short() {
        let mut detok = IncrementalDetokenizer::new(bytes_decode);
        for _ in 0..1000 {
            assert_eq!(detok.push(u32::from(b'z')), "z");
        }
        assert!(detok.tokens.len() <= 2, "{}", detok.tokens.len());
    }

    #[test]
    fn changed_history_falls_back_to_common_prefix() {
        assert_eq!(text_after("ab", "abc"), "c");
        assert_eq!(text_after("aé", "aèx"), "èx");
    }
}
