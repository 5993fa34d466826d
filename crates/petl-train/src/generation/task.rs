//! What a generation task is: its data, its prompt, how it is scored and decoded.

use crate::{Result, TrainError};
use petl_data::{
    read_gen_jsonl, read_wmt16_en_ro, read_xsum, EnRoDirection, GenDataset, GenKind, JsonlFields,
    PromptTemplate,
};
use petl_generate::GenerationConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a generation task's examples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "format", deny_unknown_fields)]
pub enum GenData {
    /// XSum-style JSONL (`document`, `summary`, `id`).
    Xsum {
        /// The JSONL file.
        path: PathBuf,
    },
    /// WMT16 en-ro parallel text: `<dir>/<stem>.en` and `<dir>/<stem>.ro`.
    Wmt16 {
        /// The folder holding the files.
        dir: PathBuf,
        /// The file stem (`newstest2016`).
        #[serde(default = "default_wmt_stem")]
        stem: String,
        /// `en-ro` or `ro-en`.
        direction: String,
    },
    /// JSONL prompt/response records.
    Jsonl {
        /// The JSONL file.
        path: PathBuf,
        /// Field holding the prompt. Default `prompt`.
        #[serde(default = "default_source_field")]
        source_field: String,
        /// Field holding the response. Default `response`.
        #[serde(default = "default_target_field")]
        target_field: String,
    },
}

fn default_wmt_stem() -> String {
    "newstest2016".into()
}
fn default_source_field() -> String {
    "prompt".into()
}
fn default_target_field() -> String {
    "response".into()
}

/// How generated text is scored against the references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextMetric {
    /// ROUGE-1/2/L/Lsum F-measures (rouge-score, stemmed); the headline is ROUGE-2, He et
    /// al.'s validation metric for XSum.
    Rouge,
    /// Corpus BLEU (sacreBLEU, 13a tokenization).
    Bleu,
}

impl TextMetric {
    /// The metric a task kind is scored with by default.
    pub fn default_for(kind: &GenKind) -> Self {
        match kind {
            GenKind::Translation { .. } => Self::Bleu,
            _ => Self::Rouge,
        }
    }

    /// The name of the headline number.
    pub fn headline_name(self) -> &'static str {
        match self {
            Self::Rouge => "rouge2",
            Self::Bleu => "bleu",
        }
    }
}

/// A text-generation task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenTask {
    /// Task name used in reports.
    pub name: String,
    /// The examples.
    pub data: GenData,
    /// The last `holdout` examples of the file are the evaluation set, the rest train (in
    /// file order, so every run and every method sees the same split).
    pub holdout: usize,
    /// The prompt, with one `{source}` placeholder. Default: the task kind's template
    /// (`Summarize the following article in one sentence.…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Wrap the prompt as a ChatML user turn with an open assistant turn (instruct models
    /// such as SmolLM2-Instruct).
    #[serde(default)]
    pub chat: bool,
    /// Longest target in tokens, eos included; the source is cut to fit `train.max_len`.
    #[serde(default = "default_max_target_len")]
    pub max_target_len: usize,
    /// Scoring; default by task kind (ROUGE for summaries and responses, BLEU for translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<TextMetric>,
    /// How evaluation decodes (greedy by default, at most `max_target_len` new tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationConfig>,
}

fn default_max_target_len() -> usize {
    64
}

impl GenTask {
    /// Reads every example of the task's file(s).
    pub fn read(&self) -> Result<GenDataset> {
        Ok(match &self.data {
            GenData::Xsum { path } => read_xsum(path)?,
            GenData::Wmt16 { dir, stem, direction } => {
                let d = EnRoDirection::from_name(direction).ok_or_else(|| TrainError::Config {
                    field: "task.data.direction",
                    reason: format!("{direction:?} is not en-ro or ro-en"),
                })?;
                read_wmt16_en_ro(dir, stem, d)?
            }
            GenData::Jsonl {
                path,
                source_field,
                target_field,
            } => {
                let fields = JsonlFields {
                    source: source_field.clone(),
                    target: target_field.clone(),
                    id: Some("id".into()),
                };
                read_gen_jsonl(path, &fields, &self.name, GenKind::Instruction)?
            }
        })
    }

    /// The training and evaluation sets: everything but the last `holdout` examples, then
    /// those.
    pub fn split(&self) -> Result<(GenDataset, GenDataset)> {
        let data = self.read()?;
        if self.holdout == 0 || self.holdout >= data.len() {
            return Err(TrainError::Config {
                field: "task.holdout",
                reason: format!(
                    "{} of {} examples leaves no training or no evaluation set",
                    self.holdout,
                    data.len()
                ),
            });
        }
        let n = data.len() - self.holdout;
        Ok(data.split_at(n)?)
    }

    /// The ISO code of the target language, for translation tasks (`ro` for en→ro).
    pub fn target_language(&self) -> Option<&str> {
        match &self.data {
            GenData::Wmt16 { direction, .. } => match EnRoDirection::from_name(direction)? {
                EnRoDirection::EnToRo => Some("ro"),
                EnRoDirection::RoToEn => Some("en"),
            },
            _ => None,
        }
    }

    /// The prompt template for examples of `kind`.
    pub fn template(&self, kind: &GenKind) -> Result<PromptTemplate> {
        let base = match &self.template {
            Some(t) => PromptTemplate::new(t)?,
            None => PromptTemplate::default_for(kind),
        };
        Ok(if self.chat { base.chatml(None) } else { base })
    }

    /// The scoring metric for examples of `kind`.
    pub fn metric(&self, kind: &GenKind) -> TextMetric {
        self.metric.unwrap_or_else(|| TextMetric::default_for(kind))
    }

    /// How evaluation decodes: the task's configuration, or greedy with `max_target_len`
    /// new tokens; the model's stop tokens are added.
    pub fn generation(&self, stop_tokens: &[u32]) -> GenerationConfig {
        let mut g = self.generation.clone().unwrap_or_else(|| GenerationConfig {
            max_new_tokens: self.max_target_len,
            ..GenerationConfig::default()
        });
        for &t in stop_tokens {
            if !g.stop_tokens.contains(&t) {
                g.stop_tokens.push(t);
            }
        }
        g
    }
}
