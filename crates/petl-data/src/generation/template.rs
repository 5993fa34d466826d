//! Prompt templates: fixed instruction text around a `{source}` placeholder.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::generation::example::GenKind;

/// The placeholder a template's source text replaces.
pub const SOURCE_PLACEHOLDER: &str = "{source}";

/// A prompt template: `head + source + tail`, written as one string with a
/// single `{source}` placeholder (no other braces are special).
///
/// The head and tail are the instruction; truncation only ever shortens the
/// source, so they always reach the model intact. Chat models get their
/// turn markup from [`PromptTemplate::chatml`]. Special tokens written in a
/// template (e.g. `<|im_start|>`) become their ids if the tokenizer knows
/// them as added tokens.
///
/// Serializes as the template string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PromptTemplate {
    head: String,
    tail: String,
}

impl PromptTemplate {
    /// Parses a template string.
    ///
    /// # Errors
    ///
    /// [`DataError::BadTemplate`] unless `{source}` occurs exactly once.
    pub fn new(template: &str) -> Result<Self> {
        let bad = |reason: &str| DataError::BadTemplate {
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let (head, tail) = template
            .split_once(SOURCE_PLACEHOLDER)
            .ok_or_else(|| bad("missing the {source} placeholder"))?;
        if tail.contains(SOURCE_PLACEHOLDER) {
            return Err(bad("{source} must occur exactly once"));
        }
        Ok(PromptTemplate {
            head: head.to_string(),
            tail: tail.to_string(),
        })
    }

    /// The default summarization prompt:
    /// `"Summarize the following article in one sentence.\n\n{source}\n\nSummary:"`.
    pub fn summarize() -> Self {
        PromptTemplate {
            head: "Summarize the following article in one sentence.\n\n".into(),
            tail: "\n\nSummary:".into(),
        }
    }

    /// The default translation prompt, e.g. for English → Romanian
    /// `"Translate the following English text to Romanian.\n\nEnglish: {source}\n\nRomanian:"`.
    pub fn translate(source_lang: &str, target_lang: &str) -> Self {
        PromptTemplate {
            head: format!("Translate the following {source_lang} text to {target_lang}.\n\n{source_lang}: "),
            tail: format!("\n\n{target_lang}:"),
        }
    }

    /// `"{source}"`: the source is the whole prompt (prompt/response data).
    pub fn identity() -> Self {
        PromptTemplate {
            head: String::new(),
            tail: String::new(),
        }
    }

    /// The template a dataset kind gets unless the user gives one:
    /// [`summarize`](Self::summarize), [`translate`](Self::translate) or
    /// [`identity`](Self::identity).
    pub fn default_for(kind: &GenKind) -> Self {
        match kind {
            GenKind::Summarization => Self::summarize(),
            GenKind::Translation {
                source_lang,
                target_lang,
            } => Self::translate(source_lang, target_lang),
            GenKind::Instruction => Self::identity(),
        }
    }

    /// Wraps this template as the user turn of a ChatML conversation ending
    /// with an open assistant turn, as SmolLM2-Instruct and other ChatML
    /// models expect:
    ///
    /// ```text
    /// <|im_start|>system\n{system}<|im_end|>\n      (only when `system` is given)
    /// <|im_start|>user\n{this template}<|im_end|>\n<|im_start|>assistant\n
    /// ```
    ///
    /// Pair it with the model's `<|im_end|>` id as eos. SmolLM2's own chat
    /// template inserts the system message "You are a helpful AI assistant
    /// named SmolLM, trained by Hugging Face" when none is given; pass it as
    /// `system` to reproduce `apply_chat_template` exactly.
    pub fn chatml(&self, system: Option<&str>) -> Self {
        let system = system
            .map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n"))
            .unwrap_or_default();
        PromptTemplate {
            head: format!("{system}<|im_start|>user\n{}", self.head),
            tail: format!("{}<|im_end|>\n<|im_start|>assistant\n", self.tail),
        }
    }

    /// Text before the source.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Text after the source.
    pub fn tail(&self) -> &str {
        &self.tail
    }

    /// The prompt for `source`.
    pub fn render(&self, source: &str) -> String {
        let mut s = String::with_capacity(self.head.len() + source.len() + self.tail.len());
        s.push_str(&self.head);
        s.push_str(source);
        s.push_str(&self.tail);
        s
    }

    /// The text put before a target when it is tokenized after this prompt:
    /// a space when the prompt ends in a visible character (`"Summary:"` is
    /// followed by `" The…"`, as a byte-level BPE model would write it),
    /// nothing when it ends in whitespace (ChatML's `"assistant\n"`) or is the
    /// bare source ([`identity`](Self::identity), where prompt and response
    /// are concatenated as given, like TRL's prompt-completion data).
    pub fn default_target_lead(&self) -> &'static str {
        match self.tail.chars().last() {
            Some(c) if !c.is_whitespace() => " ",
            _ => "",
        }
    }
}

impl fmt::Display for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SOURCE_PLACEHOLDER}{}", self.head, self.tail)
    }
}

impl TryFrom<String> for PromptTemplate {
    type Error = DataError;

    fn try_from(s: String) -> Result<Self> {
        PromptTemplate::new(&s)
    }
}

impl From<PromptTemplate> for String {
    fn from(t: PromptTemplate) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_render_and_roundtrip() {
        let t = PromptTemplate::new("Q: {source}\nA:").unwrap();
        assert_eq!((t.head(), t.tail()), ("Q: ", "\nA:"));
        assert_eq!(t.render("hi"), "Q: hi\nA:");
        assert_eq!(t.to_string(), "Q: {source}\nA:");
        for preset in [
            PromptTemplate::summarize(),
            PromptTemplate::translate("English", "Romanian"),
            PromptTemplate::identity(),
            PromptTemplate::summarize().chatml(Some("sys")),
        ] {
            assert_eq!(PromptTemplate::new(&preset.to_string()).unwrap(), preset);
            let json = serde_json::to_string(&preset).unwrap();
            assert_eq!(serde_json::from_str::<PromptTemplate>(&json).unwrap(), preset);
        }
        assert_eq!(
            PromptTemplate::summarize().to_string(),
            "Summarize the following article in one sentence.\n\n{source}\n\nSummary:"
        );
        assert_eq!(
            PromptTemplate::translate("English", "Romanian").render("Hi."),
            "Translate the following English text to Romanian.\n\nEnglish: Hi.\n\nRomanian:"
        );
    }

    #[test]
    fn bad_templates() {
        for bad in ["no placeholder", "{source} and {source}", "{Source}"] {
            let err = PromptTemplate::new(bad).unwrap_err();
            assert!(
                matches!(&err, DataError::BadTemplate { template, .. } if template == bad),
                "{err:?}"
            );
        }
        assert!(serde_json::from_str::<PromptTemplate>("\"nothing\"").is_err());
    }

    #[test]
    fn chatml_and_leads() {
        let chat = PromptTemplate::identity().chatml(None);
        assert_eq!(
            chat.render("Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let sys = PromptTemplate::summarize().chatml(Some("Be brief."));
        assert!(sys
            .render("X")
            .starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSummarize"));
        assert_eq!(chat.default_target_lead(), "");
        assert_eq!(sys.default_target_lead(), "");
        assert_eq!(PromptTemplate::summarize().default_target_lead(), " ");
        assert_eq!(PromptTemplate::identity().default_target_lead(), "");
        assert_eq!(
            PromptTemplate::default_for(&GenKind::Instruction),
            PromptTemplate::identity()
        );
    }
}
