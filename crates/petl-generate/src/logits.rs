//! Checking what the model returns before anything reads it.

use crate::error::GenerateError;

/// Checks that `logits` has one `vocab_size`-long row per cache row and no NaN or +inf.
/// `rows[i]` is the prompt row of cache row `i` (for error messages).
pub(crate) fn check_logits<E: std::error::Error + 'static>(
    step: usize,
    logits: Vec<Vec<f32>>,
    rows: &[usize],
    vocab_size: usize,
) -> Result<Vec<Vec<f32>>, GenerateError<E>> {
    if logits.len() != rows.len() {
        return Err(GenerateError::LogitRows {
            step,
            expected: rows.len(),
            got: logits.len(),
        });
    }
    for (values, &row) in logits.iter().zip(rows) {
        if values.len() != vocab_size {
            return Err(GenerateError::LogitWidth {
                step,
                row,
                expected: vocab_size,
                got: values.len(),
            });
        }
        if let Some((token, &value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_nan() || **v == f32::INFINITY)
        {
            return Err(GenerateError::NonFiniteLogit {
                step,
                row,
                token,
                value,
            });
        }
    }
    Ok(logits)
}
