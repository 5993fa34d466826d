//! Decoding a dataset and scoring it against its references.

use super::codec::TextCodec;
use super::model::GenTaskModel;
use super::task::TextMetric;
use crate::{Result, TrainError};
use indicatif::ProgressBar;
use petl_data::GenExample;
use petl_generate::{GenerationConfig, NoSink};
use petl_metrics::{corpus_bleu, BleuOptions, RougeScorer, RougeType, Scores};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One decoded example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenPrediction {
    /// The example's id.
    pub id: String,
    /// The generated text.
    pub prediction: String,
    /// The reference.
    pub reference: String,
    /// Tokens generated.
    pub tokens: usize,
}

/// What evaluating a generation dataset gives.
#[derive(Debug, Clone)]
pub struct GenEvalOutcome {
    /// Every metric (`rouge1`, `rouge2`, `rougeL`, `rougeLsum` as F-measures × 100, or `bleu`).
    pub scores: Scores,
    /// The headline number (ROUGE-2 or BLEU).
    pub headline: f64,
    /// Each example's output, in dataset order.
    pub predictions: Vec<GenPrediction>,
    /// Examples decoded per second.
    pub examples_per_s: f64,
    /// Tokens generated per second.
    pub tokens_per_s: f64,
}

/// How an evaluation decodes and scores.
#[derive(Debug, Clone, Copy)]
pub struct EvalSettings<'a> {
    /// The scoring metric.
    pub metric: TextMetric,
    /// Decoding.
    pub config: &'a GenerationConfig,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Longest prompt in tokens (over-long sources are cut, the instruction kept); an
    /// encoder-decoder's sources are cut to the codec's source length instead.
    pub max_prompt_len: usize,
}

/// Decodes every example's prompt with `settings` and scores the outputs, advancing `bar`
/// by one per example.
pub fn evaluate_generation(
    tm: &GenTaskModel<'_>,
    codec: &TextCodec,
    examples: &[GenExample],
    settings: EvalSettings<'_>,
    bar: &ProgressBar,
) -> Result<GenEvalOutcome> {
    let EvalSettings {
        metric,
        config,
        batch_size,
        max_prompt_len,
    } = settings;
    let started = Instant::now();
    let prompts = codec.prompts(examples, max_prompt_len)?;
    // Similar lengths together: left padding costs as much compute as real tokens.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut outputs: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i].input_ids.as_slice()).collect();
        let generated = tm.generate(&batch, config, &mut NoSink)?;
        for (&i, g) in chunk.iter().zip(generated) {
            outputs[i] = Some(g.tokens);
        }
        bar.inc(chunk.len() as u64);
    }
    let base = tm.base();
    let mut predictions = Vec::with_capacity(examples.len());
    let mut generated_tokens = 0;
    for (ex, out) in examples.iter().zip(outputs) {
        let tokens = out.unwrap_or_default();
        let stop = &base.special().eos;
        let kept: Vec<u32> = tokens.iter().copied().take_while(|t| !stop.contains(t)).collect();
        generated_tokens += tokens.len();
        predictions.push(GenPrediction {
            id: ex.id.clone(),
            prediction: base.decode(&kept)?.trim().to_string(),
            reference: ex.target.clone(),
            tokens: tokens.len(),
        });
    }
    let (scores, headline) = score(&predictions, metric)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(GenEvalOutcome {
        scores,
        headline,
        examples_per_s: examples.len() as f64 / secs,
        tokens_per_s: generated_tokens as f64 / secs,
        predictions,
    })
}

/// The metric's numbers over the predictions, ×100 as papers report them, and the headline.
fn score(predictions: &[GenPrediction], metric: TextMetric) -> Result<(Scores, f64)> {
    let refs: Vec<&str> = predictions.iter().map(|p| p.reference.as_str()).collect();
    let hyps: Vec<&str> = predictions.iter().map(|p| p.prediction.as_str()).collect();
    let mut scores = Scores::default();
    let metrics_error = |e: petl_metrics::MetricsError| TrainError::Config {
        field: "metric",
        reason: e.to_string(),
    };
    match metric {
        TextMetric::Rouge => {
            let types = [
                RougeType::Rouge1,
                RougeType::Rouge2,
                RougeType::RougeL,
                RougeType::RougeLsum,
            ];
            let scorer = RougeScorer::new(&types, true);
            let means = scorer.score_corpus(&refs, &hyps).map_err(metrics_error)?;
            for (t, s) in means {
                scores.0.insert(t.to_string(), 100.0 * s.fmeasure);
            }
        }
        TextMetric::Bleu => {
            let bleu = corpus_bleu(&hyps, &[refs], &BleuOptions::default()).map_err(metrics_error)?;
            scores.0.insert("bleu".into(), bleu.score);
        }
    }
    let headline = scores.0.get(metric.headline_name()).copied().unwrap_or(f64::NAN);
    Ok((scores, headline))
}
