//! Batch planning by a token budget, for gradient accumulation by tokens.

use crate::batch::{epoch_rng, shuffle, BatchOrder, BUCKET_BATCHES};

/// Groups example indices into batches whose padded size stays within
/// `max_tokens`: a batch of `n` rows whose longest example has `L` tokens
/// costs `n × L`.
///
/// `lengths[i]` is the token count of example `i` (e.g.
/// [`crate::CausalEncoded::len`]). Batches are filled greedily in the
/// order's sequence (file order, a shuffle, or length-sorted buckets of a
/// shuffle, the batches then shuffled, as in [`crate::plan_batches`]). Every
/// index appears exactly once; an example longer than the budget (or any
/// example, when `max_tokens` is 0) gets a batch of its own. The plan
/// depends only on the arguments, identically on every platform.
pub fn plan_token_batches(lengths: &[usize], max_tokens: usize, order: BatchOrder) -> Vec<Vec<usize>> {
    let pairs: Vec<(usize, usize)> = lengths.iter().map(|&l| (l, 0)).collect();
    plan_seq2seq_batches(&pairs, max_tokens, order)
}

/// [`plan_token_batches`] for encoder-decoder examples: `lengths[i]` is
/// `(source tokens, target tokens)` (e.g. [`crate::Seq2SeqEncoded::lengths`])
/// and a batch of `n` rows costs `n × (longest source + longest target)`,
/// the encoder and decoder tensors together.
pub fn plan_seq2seq_batches(
    lengths: &[(usize, usize)],
    max_tokens: usize,
    order: BatchOrder,
) -> Vec<Vec<usize>> {
    let mut indices: Vec<usize> = (0..lengths.len()).collect();
    match order {
        BatchOrder::Sequential => pack(&indices, lengths, max_tokens),
        BatchOrder::Shuffled { seed, epoch } => {
            let mut rng = epoch_rng(seed, epoch);
            shuffle(&mut indices, &mut rng);
            pack(&indices, lengths, max_tokens)
        }
        BatchOrder::Bucketed { seed, epoch } => {
            let mut rng = epoch_rng(seed, epoch);
            shuffle(&mut indices, &mut rng);
            let mut batches = Vec::new();
            for chunk in indices.chunks_mut(bucket_size(lengths, max_tokens)) {
                // Stable: equal lengths keep their shuffled order.
                chunk.sort_by_key(|&i| lengths[i].0 + lengths[i].1);
                batches.extend(pack(chunk, lengths, max_tokens));
            }
            // Without this, each chunk would run from short to long batches
            // every epoch, a curriculum nobody asked for.
            shuffle(&mut batches, &mut rng);
            batches
        }
    }
}

/// Padded token count of a batch: rows × (longest source + longest target).
pub fn padded_tokens(batch: &[usize], lengths: &[(usize, usize)]) -> usize {
    let a = batch.iter().map(|&i| lengths[i].0).max().unwrap_or(0);
    let b = batch.iter().map(|&i| lengths[i].1).max().unwrap_or(0);
    batch.len() * (a + b)
}

/// Examples per length-sorted bucket: about [`BUCKET_BATCHES`] batches of
/// the typical size, as for fixed-size batches.
fn bucket_size(lengths: &[(usize, usize)], max_tokens: usize) -> usize {
    let total: usize = lengths.iter().map(|&(a, b)| a + b).sum();
    let mean = (total / lengths.len().max(1)).max(1);
    BUCKET_BATCHES * (max_tokens / mean).max(1)
}

fn pack(order: &[usize], lengths: &[(usize, usize)], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut max_a, mut max_b) = (0, 0);
    for &i in order {
        let (a, b) = lengths[i];
        let (na, nb) = (max_a.max(a), max_b.max(b));
        if !current.is_empty() && (current.len() + 1) * (na + nb) > max_tokens {
            batches.push(std::mem::take(&mut current));
            (max_a, max_b) = (a, b);
        } else {
            (max_a, max_b) = (na, nb);
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_packs_greedily() {
        // 3 × 4 = 12 fits 12; adding the 5 would cost 4 × 5 = 20.
        let plan = plan_token_batches(&[4, 2, 4, 5, 20, 1], 12, BatchOrder::Sequential);
        assert_eq!(plan, vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
        assert!(plan_token_batches(&[], 12, BatchOrder::Sequential).is_empty());
        let plan = plan_token_batches(&[1, 1, 1], 0, BatchOrder::Sequential);
        assert_eq!(plan, vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn seq2seq_cost_adds_longest_source_and_target() {
        // Together: 2 × (5 + 4) = 18 > 16; each alone fits.
        let lens = [(5, 1), (1, 4)];
        assert_eq!(
            plan_seq2seq_batches(&lens, 16, BatchOrder::Sequential),
            vec![vec![0], vec![1]]
        );
        assert_eq!(padded_tokens(&[0, 1], &lens), 18);
        assert_eq!(
            plan_seq2seq_batches(&lens, 18, BatchOrder::Sequential),
            vec![vec![0, 1]]
        );
    }
}
