//! Deciding whether a row (or beam candidate) has ended.

use crate::output::FinishReason;

/// A decode function for stop strings.
pub(crate) type Detokenizer<'a> = &'a dyn Fn(&[u32]) -> String;

/// The stop conditions of a call.
#[derive(Clone, Copy)]
pub(crate) struct StopCheck<'a> {
    pub stop_tokens: &'a [u32],
    pub stop_strings: &'a [String],
    /// Present whenever `stop_strings` is non-empty (checked before decoding starts).
    pub detokenizer: Option<Detokenizer<'a>>,
}

impl StopCheck<'_> {
    /// Whether `generated` followed by `next` ends a row whose budget is `budget`: a stop token
    /// first, then a stop string in the decoded generated text, then the length limit.
    pub fn check(
        &self,
        generated: &[u32],
        next: u32,
        budget: usize,
        length_reason: FinishReason,
    ) -> Option<FinishReason> {
        if self.stop_tokens.contains(&next) {
            return Some(FinishReason::StopToken(next));
        }
        if let (false, Some(decode)) = (self.stop_strings.is_empty(), self.detokenizer) {
            // The whole generated text is decoded each time: tokenizers do not decode a suffix
            // of tokens to a suffix of the text, so a window could miss a match.
            let mut tokens = Vec::with_capacity(generated.len() + 1);
            tokens.extend_from_slice(generated);
            tokens.push(next);
            let text = decode(&tokens);
            if let Some(index) = self.stop_strings.iter().position(|s| text.contains(s.as_str())) {
                return Some(FinishReason::StopString(index));
            }
        }
        (generated.len() + 1 >= budget).then_some(length_reason)
    }
}
