//! Logit processors with the semantics of transformers 5.23's `generation/logits_process.py`.
//!
//! Each function rewrites one row of scores in place. Banned tokens get `-inf`. Token ids at or
//! above `scores.len()` in a history are ignored (transformers clamps them to a spare column);
//! arithmetic is done in `f32` where transformers does it in `float32`, so the outputs match
//! bit for bit except where noted.

use std::cmp::Ordering;

/// `log_softmax` over the row (HF applies it to the raw logits before the processors in beam
/// search). The normaliser is accumulated in `f64`; a row that is all `-inf` stays `-inf`.
pub fn log_softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f64 = scores.iter().map(|&s| f64::from(s - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    for s in scores.iter_mut() {
        *s = (*s - max) - log_sum;
    }
}

/// `RepetitionPenaltyLogitsProcessor(penalty)`: every token present in `history` has its score
/// multiplied by `penalty` when negative and divided by it otherwise (once per distinct token).
pub fn apply_repetition_penalty(scores: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = vec![false; scores.len()];
    for &token in history {
        let Some(done) = seen.get_mut(token as usize) else {
            continue;
        };
        if !*done {
            *done = true;
            let s = &mut scores[token as usize];
            *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
        }
    }
}

/// `NoRepeatNGramLogitsProcessor(n)`: bans every token that would complete an n-gram already
/// present in `history`. `n = 0` bans nothing; `n = 1` bans every token of `history`.
pub fn ban_repeated_ngrams(scores: &mut [f32], history: &[u32], n: usize) {
    if n == 0 || history.len() < n {
        return;
    }
    // The next token completes the n-gram that starts with the last n-1 tokens; every earlier
    // window that starts the same way bans its own last token.
    let prefix = &history[history.len() + 1 - n..];
    for window in history.windows(n) {
        if &window[..n - 1] == prefix {
            if let Some(s) = scores.get_mut(window[n - 1] as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// Sets the scores of `tokens` to `-inf` (`MinNewTokensLengthLogitsProcessor` while fewer than
/// `min_new_tokens` tokens exist, with the stop tokens).
pub fn ban_tokens(scores: &mut [f32], tokens: &[u32]) {
    for &token in tokens {
        if let Some(s) = scores.get_mut(token as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `ForcedBOSTokenLogitsProcessor` / `ForcedEOSTokenLogitsProcessor` at their position: every
/// score becomes `-inf` except `token`'s, which becomes 0. A token outside the row changes nothing.
pub fn force_token(scores: &mut [f32], token: u32) {
    if (token as usize) < scores.len() {
        scores.fill(f32::NEG_INFINITY);
        scores[token as usize] = 0.0;
    }
}

/// `TemperatureLogitsWarper(temperature)`: divides every score by `temperature`.
pub fn apply_temperature(scores: &mut [f32], temperature: f32) {
    for s in scores.iter_mut() {
        *s /= temperature;
    }
}

/// `TopKLogitsWarper(top_k, min_tokens_to_keep)`: keeps the scores not below the k-th highest
/// (so ties with it survive), with k = max(`top_k`, `min_tokens_to_keep`) capped at the row
/// length. `top_k = 0` keeps everything (HF adds no warper then).
pub fn top_k_filter(scores: &mut [f32], top_k: usize, min_tokens_to_keep: usize) {
    if top_k == 0 || scores.is_empty() {
        return;
    }
    let k = top_k.max(min_tokens_to_keep).min(scores.len());
    let mut ranked = scores.to_vec();
    let (_, &mut threshold, _) = ranked.select_nth_unstable_by(k - 1, |a, b| descending(*a, *b));
    for s in scores.iter_mut() {
        if *s < threshold {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper(top_p, min_tokens_to_keep)`: sorts the scores ascending, removes every
/// token whose cumulative probability (softmax over the row) is `<= 1 - top_p`, but always keeps
/// the `min_tokens_to_keep` highest. What survives is the smallest set of highest-probability
/// tokens whose mass reaches `top_p`. Probabilities are accumulated in `f64` and compared in
/// `f32` like torch's CPU `cumsum`. Equal scores sort by token id, so at a cut between ties the
/// lower ids go first, as torch's (unstable) sort does on short rows.
pub fn top_p_filter(scores: &mut [f32], top_p: f64, min_tokens_to_keep: usize) {
    if scores.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[a]
            .partial_cmp(&scores[b])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    });
    let max = f64::from(scores[order[order.len() - 1]]);
    if max == f64::NEG_INFINITY {
        return;
    }
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (f64::from(scores[i]) - max).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let threshold = (1.0 - top_p) as f32;
    let keep_from = order.len().saturating_sub(min_tokens_to_keep.max(1));
    let mut cumulative = 0.0f64;
    for (rank, (&token, weight)) in order.iter().zip(&weights).enumerate() {
        cumulative += weight / total;
        if rank < keep_from && (cumulative as f32) <= threshold {
            scores[token] = f32::NEG_INFINITY;
        }
    }
}

/// Orders scores highest first; incomparable values (never produced here) compare equal.
pub(crate) fn descending(a: f32, b: f32) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probabilities 0.5, 0.25, 0.125, 0.125 (exact in binary)
        let logits: Vec<f32> = [0.5f32, 0.25, 0.125, 0.125].iter().map(|p| p.ln()).collect();
        let kept = |p: f64| {
            let mut s = logits.clone();
            top_p_filter(&mut s, p, 1);
            s.iter().map(|x| x.is_finite()).collect::<Vec<_>>()
        };
        assert_eq!(kept(0.3), [true, false, false, false]);
        assert_eq!(kept(0.5), [true, false, false, false]); // mass 0.5 reaches 0.5
        assert_eq!(kept(0.6), [true, true, false, false]);
        // ties sort by id, so the lower id is the first to go (as torch's sort does on short rows)
        assert_eq!(kept(0.8), [true, true, false, true]);
        assert_eq!(kept(0.9), [true, true, true, true]);
        assert_eq!(kept(1.0), [true, true, true, true]);
        assert_eq!(kept(1e-9), [true, false, false, false]); // never empty
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let mut s = vec![1.0, 3.0, 2.0, 2.0, 0.0];
        top_k_filter(&mut s, 2, 1);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, 2.0, 2.0, f32::NEG_INFINITY]);
        let mut s = vec![1.0, 3.0];
        top_k_filter(&mut s, 10, 1);
        assert_eq!(s, [1.0, 3.0]);
    }

    #[test]
    fn ngram_ban_matches_hand_count() {
        // history 5 6 7 5 6: the bigram (5,6) → 7 would repeat "5 6 7"
        let mut s = vec![0.0; 9];
        ban_repeated_ngrams(&mut s, &[5, 6, 7, 5, 6], 3);
        let banned: Vec<usize> = (0..9).filter(|&t| s[t] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, [7]);
        let mut s = vec![0.0; 9];
        ban_repeated_ngrams(&mut s, &[5, 6, 7, 5, 6], 2);
        let banned: Vec<usize> = (0..9).filter(|&t| s[t] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, [7]); // "6 7" seen; "6 5" never
        let mut s = vec![0.0; 9];
        ban_repeated_ngrams(&mut s, &[5, 6, 7, 5, 6], 1);
        let banned: Vec<usize> = (0..9).filter(|&t| s[t] == f32::NEG_INFINITY).collect();
        assert_eq!(banned, [5, 6, 7]);
    }

    #[test]
    fn out_of_range_ids_are_ignored() {
        let mut s = vec![1.0, -1.0];
        apply_repetition_penalty(&mut s, &[7, 1, 1], 2.0);
        assert_eq!(s, [1.0, -2.0]);
        ban_tokens(&mut s, &[9]);
        force_token(&mut s, 9);
        ban_repeated_ngrams(&mut s, &[9, 9], 1);
        assert_eq!(s, [1.0, -2.0]);
    }

    #[test]
    fn log_softmax_of_all_banned_row_stays_banned() {
        let mut s = vec![f32::NEG_INFINITY; 3];
        log_softmax(&mut s);
        assert!(s.iter().all(|&x| x == f32::NEG_INFINITY));
        let mut s = vec![0.0, f32::NEG_INFINITY];
        log_softmax(&mut s);
        assert_eq!(s, [0.0, f32::NEG_INFINITY]);
    }
}
