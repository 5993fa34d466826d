//! Greedy decoding and sampling: one sequence per row, each row ending on its own.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::GenerateError;
use crate::logits::check_logits;
use crate::model::StepModel;
use crate::output::{FinishReason, Generation};
use crate::pipeline::{Pipeline, RowPosition};
use crate::prepare::Row;
use crate::stop::StopCheck;
use crate::stream::{Flow, TokenSink};

/// How a row's next token is picked from its processed scores.
pub(crate) enum Chooser {
    /// The highest score, lowest id among ties (`torch.argmax`).
    Greedy,
    /// A draw from the softmax of the scores, one ChaCha20 stream per row.
    Sample(Vec<ChaCha20Rng>),
}

impl Chooser {
    /// A sampler whose row `i` uses stream `i` of `seed`.
    pub fn sampler(seed: u64, rows: usize) -> Self {
        Self::Sample(
            (0..rows)
                .map(|row| {
                    let mut rng = ChaCha20Rng::seed_from_u64(seed);
                    rng.set_stream(row as u64);
                    rng
                })
                .collect(),
        )
    }

    fn choose(&mut self, scores: &[f32], row: usize) -> Option<u32> {
        match self {
            Self::Greedy => argmax(scores),
            Self::Sample(rngs) => rngs.get_mut(row).and_then(|rng| draw(scores, rng)),
        }
    }
}

/// The first index of the highest finite score.
fn argmax(scores: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s > f32::NEG_INFINITY && best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// A token drawn with probability softmax(scores); `None` when every score is `-inf`.
fn draw(scores: &[f32], rng: &mut ChaCha20Rng) -> Option<u32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    let weight = |s: f32| (f64::from(s) - f64::from(max)).exp();
    let total: f64 = scores.iter().map(|&s| weight(s)).sum();
    let target = rng.random::<f64>() * total;
    let mut cumulative = 0.0;
    let mut last_allowed = None;
    for (i, &s) in scores.iter().enumerate() {
        if s == f32::NEG_INFINITY {
            continue;
        }
        cumulative += weight(s);
        last_allowed = Some(i as u32);
        if cumulative > target {
            return last_allowed;
        }
    }
    // Rounding can leave the target just above the sum.
    last_allowed
}

/// Decodes every row to its end, dropping finished rows from the cache as it goes.
pub(crate) fn decode<M: StepModel, S: TokenSink + ?Sized>(
    model: &M,
    rows: &[Row],
    vocab_size: usize,
    pipeline: &Pipeline,
    stop: StopCheck<'_>,
    mut chooser: Chooser,
    sink: &mut S,
) -> Result<Vec<Generation>, GenerateError<M::Error>> {
    let inputs: Vec<&[u32]> = rows.iter().map(|row| row.input.as_slice()).collect();
    let (mut cache, logits) = model
        .prefill(&inputs)
        .map_err(|source| GenerateError::Model { step: 0, source })?;
    // active[i] is the prompt row held in cache row i.
    let mut active: Vec<usize> = (0..rows.len()).collect();
    let mut logits = check_logits(0, logits, &active, vocab_size)?;
    let mut sequences: Vec<Vec<u32>> = rows.iter().map(|row| row.prefix.clone()).collect();
    let mut outcome: Vec<Option<FinishReason>> = vec![None; rows.len()];
    for step in 0.. {
        let mut keep = Vec::with_capacity(active.len());
        let mut next_tokens = Vec::with_capacity(active.len());
        for (cache_row, scores) in logits.iter_mut().enumerate() {
            let row = active[cache_row];
            let spec = &rows[row];
            let generated = sequences[row].len() - spec.prefix.len();
            pipeline.process(
                scores,
                RowPosition {
                    sequence: &sequences[row],
                    generated,
                    budget: spec.budget,
                },
            );
            pipeline.warp(scores);
            let token = chooser
                .choose(scores, row)
                .ok_or(GenerateError::NoAllowedToken { step, row })?;
            let ended = stop.check(
                &sequences[row][spec.prefix.len()..],
                token,
                spec.budget,
                spec.length_reason,
            );
            sequences[row].push(token);
            let flow = sink.token(row, token);
            match ended.or((flow == Flow::Stop).then_some(FinishReason::Cancelled)) {
                Some(reason) => {
                    outcome[row] = Some(reason);
                    sink.finished(row, reason);
                }
                None => {
                    keep.push(cache_row);
                    next_tokens.push(token);
                }
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != active.len() {
            model
                .select_rows(&mut cache, &keep)
                .map_err(|source| GenerateError::Model {
                    step: step + 1,
                    source,
                })?;
            active = keep.iter().map(|&cache_row| active[cache_row]).collect();
        }
        let raw = model
            .step(&mut cache, &next_tokens)
            .map_err(|source| GenerateError::Model {
                step: step + 1,
                source,
            })?;
        logits = check_logits(step + 1, raw, &active, vocab_size)?;
    }
    Ok(rows
        .iter()
        .zip(sequences)
        .zip(outcome)
        .map(|((spec, mut sequence), reason)| Generation {
            tokens: sequence.split_off(spec.prefix.len()),
            // Every row leaves the loop with a reason: it only ends when `keep` is empty.
            finish_reason: reason.unwrap_or(spec.length_reason),
            score: None,
            runner_ups: Vec::new(),
            prompt_tokens_dropped: spec.dropped,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_skips_banned() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), None);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn draws_follow_the_softmax() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let scores = [0.25f32.ln(), f32::NEG_INFINITY, 0.75f32.ln()];
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[draw(&scores, &mut rng).unwrap() as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert_eq!(draw(&[f32::NEG_INFINITY], &mut rng), None);
    }
}
