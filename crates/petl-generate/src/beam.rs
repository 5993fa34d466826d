//! Beam search with the semantics of transformers 5.23's `GenerationMixin._beam_search`.
//!
//! Per row and step (HF helper names in brackets):
//! 1. every running beam's logits go through `log_softmax`, then the processors, and are added
//!    to the beam's score;
//! 2. the best `max(2, 1 + #stop tokens) · num_beams` candidates over all beams are kept
//!    (`_get_top_k_continuations`), best first;
//! 3. a candidate *hits* when its token is a stop token, it contains a stop string, or it fills
//!    the row's budget. The best `num_beams` candidates that do not hit run on
//!    (`_get_running_beams_for_next_iteration`); candidates that hit among the first `num_beams`
//!    ranks become finished hypotheses scored `score / generated_len^length_penalty`, and the
//!    best `num_beams` finished hypotheses are kept (`_update_finished_beams`);
//! 4. the row ends when nothing runs on, or `num_beams` hypotheses are finished and
//!    [`EarlyStopping`] says the running beams cannot beat them (`_check_early_stop_heuristic`,
//!    `_beam_search_has_unfinished_sequences`).
//!
//! Scores are `f32` as in transformers. Where transformers pads with placeholder beams scored
//! -1e9 (the first step, where only one beam is real, and rows with fewer finite candidates than
//! it keeps, e.g. a vocabulary smaller than `2 · num_beams`), this search keeps only real
//! candidates and never selects a `-inf` (banned) one; the results agree whenever transformers'
//! placeholders do not win a slot. Ties are broken towards the lower beam, then the lower token.

use std::cmp::Ordering;

use crate::config::{BeamConfig, EarlyStopping};
use crate::error::GenerateError;
use crate::logits::check_logits;
use crate::model::StepModel;
use crate::output::{Generation, Hypothesis};
use crate::pipeline::{Pipeline, RowPosition};
use crate::prepare::Row;
use crate::processors::{descending, log_softmax};
use crate::stop::StopCheck;
use crate::stream::TokenSink;

/// A live beam.
#[derive(Debug, Clone)]
struct Beam {
    /// The decoded sequence: prefix then generated tokens.
    sequence: Vec<u32>,
    /// Sum of the processed log-probabilities of its generated tokens.
    score: f32,
}

/// One row's search state.
#[derive(Debug)]
struct RowSearch {
    /// Running beams, best first.
    running: Vec<Beam>,
    /// Finished hypotheses, best first, at most `num_beams`.
    finished: Vec<Hypothesis>,
    done: bool,
}

/// A scored continuation of a running beam.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    beam: usize,
    token: u32,
}

/// Everything one step of one row needs besides its state.
struct Settings<'a> {
    beam: &'a BeamConfig,
    pipeline: &'a Pipeline,
    stop: StopCheck<'a>,
    vocab_size: usize,
    /// Candidates kept per row and step: transformers' `beams_to_keep`.
    keep: usize,
}

/// `x^length_penalty` as transformers computes it (a Python float, then `float32`).
fn length_norm(length: usize, length_penalty: f64) -> f32 {
    (length as f64).powf(length_penalty) as f32
}

/// Runs beam search over every row; the cache holds each row's running beams, rows in order.
pub(crate) fn decode<M: StepModel, S: TokenSink + ?Sized>(
    model: &M,
    rows: &[Row],
    vocab_size: usize,
    beam: &BeamConfig,
    pipeline: &Pipeline,
    stop: StopCheck<'_>,
    sink: &mut S,
) -> Result<Vec<Generation>, GenerateError<M::Error>> {
    let mut distinct_stops = stop.stop_tokens.to_vec();
    distinct_stops.sort_unstable();
    distinct_stops.dedup();
    let settings = Settings {
        beam,
        pipeline,
        stop,
        vocab_size,
        keep: beam.num_beams.saturating_mul(2.max(1 + distinct_stops.len())),
    };
    let inputs: Vec<&[u32]> = rows.iter().map(|row| row.input.as_slice()).collect();
    let (mut cache, logits) = model
        .prefill(&inputs)
        .map_err(|source| GenerateError::Model { step: 0, source })?;
    let mut searches: Vec<RowSearch> = rows
        .iter()
        .map(|row| RowSearch {
            running: vec![Beam {
                sequence: row.prefix.clone(),
                score: 0.0,
            }],
            finished: Vec::new(),
            done: false,
        })
        .collect();
    // owners[i] is the prompt row whose beam sits in cache row i.
    let mut owners: Vec<usize> = (0..rows.len()).collect();
    let mut logits = check_logits(0, logits, &owners, vocab_size)?;
    let mut step = 0;
    loop {
        let mut logits_rows = logits.iter_mut();
        // parents[i]: the cache row that new cache row i continues.
        let mut parents = Vec::new();
        let mut next_tokens = Vec::new();
        let mut new_owners = Vec::new();
        let mut row_offset = 0;
        for (row, search) in searches.iter_mut().enumerate() {
            if search.done {
                continue;
            }
            let beams_before = search.running.len();
            let beam_logits: Vec<&mut Vec<f32>> = logits_rows.by_ref().take(beams_before).collect();
            let parent_beams = advance_row(step, row, &rows[row], search, beam_logits, &settings)?;
            if search.done {
                emit(sink, row, search);
            } else {
                for (parent_beam, beam) in parent_beams.into_iter().zip(&search.running) {
                    parents.push(row_offset + parent_beam);
                    next_tokens.push(beam.sequence.last().copied().unwrap_or_default());
                    new_owners.push(row);
                }
            }
            row_offset += beams_before;
        }
        if parents.is_empty() {
            break;
        }
        step += 1;
        if parents.iter().copied().ne(0..owners.len()) {
            model
                .select_rows(&mut cache, &parents)
                .map_err(|source| GenerateError::Model { step, source })?;
        }
        owners = new_owners;
        let raw = model
            .step(&mut cache, &next_tokens)
            .map_err(|source| GenerateError::Model { step, source })?;
        logits = check_logits(step, raw, &owners, vocab_size)?;
    }
    searches
        .into_iter()
        .zip(rows)
        .enumerate()
        .map(|(row, (search, spec))| {
            let mut best = search
                .finished
                .into_iter()
                .take(settings.beam.num_return_sequences);
            // A row only ends with a finished hypothesis (advance_row errors otherwise).
            let first = best.next().ok_or(GenerateError::NoAllowedToken { step, row })?;
            Ok(Generation {
                tokens: first.tokens,
                finish_reason: first.finish_reason,
                score: Some(first.score),
                runner_ups: best.collect(),
                prompt_tokens_dropped: spec.dropped,
            })
        })
        .collect()
}

/// Candidates best first; ties go to the lower beam, then the lower token.
fn candidate_order(a: &Candidate, b: &Candidate) -> Ordering {
    descending(a.score, b.score)
        .then(a.beam.cmp(&b.beam))
        .then(a.token.cmp(&b.token))
}

/// Keeps the `keep` best candidates (in no particular order).
fn keep_best(candidates: &mut Vec<Candidate>, keep: usize) {
    if keep > 0 && candidates.len() > keep {
        candidates.select_nth_unstable_by(keep - 1, candidate_order);
        candidates.truncate(keep);
    }
}

/// One step of one row: scores every continuation, updates the running and finished beams and
/// decides whether the row is done. Returns, for each new running beam, the index of the beam
/// it continues. `beam_logits[b]` are running beam `b`'s logits.
fn advance_row<E: std::error::Error + 'static>(
    step: usize,
    row: usize,
    spec: &Row,
    search: &mut RowSearch,
    beam_logits: Vec<&mut Vec<f32>>,
    settings: &Settings<'_>,
) -> Result<Vec<usize>, GenerateError<E>> {
    let num_beams = settings.beam.num_beams;
    let length_penalty = settings.beam.length_penalty;
    let prefix_len = spec.prefix.len();
    // Every running beam has generated `step` tokens.
    let at = |sequence| RowPosition {
        sequence,
        generated: step,
        budget: spec.budget,
    };
    let mut candidates = Vec::new();
    let mut of_beam = Vec::with_capacity(settings.vocab_size);
    for (index, (beam, scores)) in search.running.iter().zip(beam_logits).enumerate() {
        log_softmax(scores);
        settings.pipeline.process(scores, at(&beam.sequence));
        of_beam.clear();
        for (token, &log_prob) in scores.iter().enumerate() {
            if log_prob > f32::NEG_INFINITY {
                of_beam.push(Candidate {
                    score: beam.score + log_prob,
                    beam: index,
                    token: token as u32,
                });
            }
        }
        // A candidate among the row's best `keep` is among its own beam's best `keep`.
        keep_best(&mut of_beam, settings.keep);
        candidates.extend_from_slice(&of_beam);
    }
    if candidates.is_empty() {
        if search.finished.is_empty() {
            return Err(GenerateError::NoAllowedToken { step, row });
        }
        search.running.clear();
        search.done = true;
        return Ok(Vec::new());
    }
    keep_best(&mut candidates, settings.keep);
    candidates.sort_unstable_by(candidate_order);

    let new_len = step + 1;
    let mut running = Vec::with_capacity(num_beams.min(candidates.len()));
    let mut parents = Vec::with_capacity(num_beams.min(candidates.len()));
    let mut newly_finished = Vec::new();
    for (rank, candidate) in candidates.iter().enumerate() {
        if rank >= num_beams && running.len() == num_beams {
            break; // later candidates can neither finish nor run
        }
        let parent = &search.running[candidate.beam];
        let generated = &parent.sequence[prefix_len..];
        match settings
            .stop
            .check(generated, candidate.token, spec.budget, spec.length_reason)
        {
            // Only the first num_beams ranks may finish; the rest exist to keep num_beams running.
            Some(finish_reason) if rank < num_beams => {
                let mut tokens = generated.to_vec();
                tokens.push(candidate.token);
                let score = candidate.score / length_norm(new_len, length_penalty);
                newly_finished.push(Hypothesis {
                    tokens,
                    score,
                    finish_reason,
                });
            }
            Some(_) => {}
            None if running.len() < num_beams => {
                let mut sequence = parent.sequence.clone();
                sequence.push(candidate.token);
                running.push(Beam {
                    sequence,
                    score: candidate.score,
                });
                parents.push(candidate.beam);
            }
            None => {}
        }
    }
    // Stable: on equal scores the earlier hypothesis stays ahead.
    search.finished.extend(newly_finished);
    search.finished.sort_by(|a, b| descending(a.score, b.score));
    search.finished.truncate(num_beams);
    search.running = running;
    search.done = search.running.is_empty() || cannot_improve(search, settings.beam, new_len, spec.budget);
    Ok(parents)
}

/// Whether a row with running beams is done: `num_beams` hypotheses are finished and, by the
/// early-stopping mode's estimate, the best running beam cannot beat the worst of them.
fn cannot_improve(search: &RowSearch, beam: &BeamConfig, generated: usize, budget: usize) -> bool {
    if search.finished.len() < beam.num_beams {
        return false;
    }
    let (Some(best), Some(worst)) = (search.running.first(), search.finished.last()) else {
        return true;
    };
    let hypothetical_len = match beam.early_stopping {
        EarlyStopping::WhenFull => return true,
        EarlyStopping::Never if beam.length_penalty > 0.0 => budget,
        EarlyStopping::Never | EarlyStopping::Heuristic => generated,
    };
    let best_possible = best.score / length_norm(hypothetical_len, beam.length_penalty);
    // transformers keeps searching only while best_possible > worst (strictly).
    best_possible <= worst.score
}

/// Streams a finished row's best hypothesis.
fn emit<S: TokenSink + ?Sized>(sink: &mut S, row: usize, search: &RowSearch) {
    if let Some(best) = search.finished.first() {
        for &token in &best.tokens {
            let _ = sink.token(row, token);
        }
        sink.finished(row, best.finish_reason);
    }
}
