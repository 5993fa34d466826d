//! The Q/K row order llama.cpp's converter writes for Llama-architecture models, and its inverse.
//!
//! Hugging Face's Llama applies rotary embeddings with `rotate_half`: in each head, dimension `j`
//! pairs with `j + head_dim/2`. llama.cpp's Llama kernels rotate *adjacent* pairs (`2j`, `2j+1`), so
//! `convert_hf_to_gguf.py` reorders the rows of `q_proj` and `k_proj` (weights and biases) per head,
//! interleaving the two halves (`LlamaModel.permute`, permalink:
//! <https://github.com/ggerganov/llama.cpp/blob/a38b884c6c4b0c256583acfaaabdf556c62fabea/convert_hf_to_gguf.py#L1402-L1408>):
//!
//! ```text
//! w.reshape(n_head, 2, rows / n_head / 2, *rest).swapaxes(1, 2).reshape(w.shape)
//! ```
//!
//! with `n_head` the KV head count for `k_proj`. [`unpermute_qk_rows`] undoes it exactly as
//! transformers' GGUF loader does (`LlamaTensorProcessor._reverse_permute_weights`). Rows only move,
//! and GGML blocks lie within rows, so the order of quantization and permutation does not matter.

use candle_core::Tensor;

use super::error::{GgufError, Result};

/// llama.cpp's Q/K row order → Hugging Face's, for a projection with `n_head` heads
/// (query heads for `q_proj`, KV heads for `k_proj`). Works on weights `[rows, in]` and biases `[rows]`.
///
/// # Errors
/// [`GgufError::QkRows`] when the rows are not a multiple of `2 * n_head`.
///
/// ```
/// # use candle_core::{Device, Tensor};
/// use petl_models::gguf::{permute_qk_rows, unpermute_qk_rows};
/// // One head of dimension 4: HF rows [a0, a1, b0, b1] (b pairs with a) are stored interleaved.
/// let hf = Tensor::new(&[0f32, 1., 2., 3.], &Device::Cpu)?;
/// let stored = permute_qk_rows(&hf, 1)?;
/// assert_eq!(stored.to_vec1::<f32>()?, [0., 2., 1., 3.]);
/// assert_eq!(unpermute_qk_rows(&stored, 1)?.to_vec1::<f32>()?, [0., 1., 2., 3.]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unpermute_qk_rows(t: &Tensor, n_head: usize) -> Result<Tensor> {
    reorder(t, n_head, true)
}

/// Hugging Face's Q/K row order → llama.cpp's: what `convert_hf_to_gguf.py` applies (see
/// [`unpermute_qk_rows`], its inverse).
///
/// # Errors
/// [`GgufError::QkRows`] when the rows are not a multiple of `2 * n_head`.
pub fn permute_qk_rows(t: &Tensor, n_head: usize) -> Result<Tensor> {
    reorder(t, n_head, false)
}

fn reorder(t: &Tensor, n_head: usize, undo: bool) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims.first().copied().unwrap_or(0);
    if n_head == 0 || rows == 0 || rows % (2 * n_head) != 0 {
        return Err(GgufError::QkRows { rows, heads: n_head });
    }
    let half = rows / n_head / 2;
    let rest: usize = dims[1..].iter().product();
    // Stored rows within a head are (pair index, member); HF rows are (member, pair index).
    let split = if undo {
        (n_head, half, 2, rest)
    } else {
        (n_head, 2, half, rest)
    };
    Ok(t.reshape(split)?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn inverse_of_each_other_on_weights_and_biases() {
        let dev = Device::Cpu;
        for (rows, cols, heads) in [(24, 5, 3), (16, 1, 2), (64, 7, 8), (6, 3, 1)] {
            let w = Tensor::arange(0f32, (rows * cols) as f32, &dev)
                .unwrap()
                .reshape((rows, cols))
                .unwrap();
            let p = permute_qk_rows(&w, heads).unwrap();
            assert_ne!(p.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
            let back = unpermute_qk_rows(&p, heads).unwrap();
            assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
            let b = Tensor::arange(0f32, rows as f32, &dev).unwrap();
            let back = unpermute_qk_rows(&permute_qk_rows(&b, heads).unwrap(), heads).unwrap();
            assert_eq!(back.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        }
    }

    #[test]
    fn matches_the_converter_row_formula() {
        // convert_hf_to_gguf: stored row h*d + 2j + i holds HF row h*d + i*(d/2) + j.
        let (heads, d) = (3usize, 8usize);
        let hf = Tensor::arange(0f32, (heads * d) as f32, &Device::Cpu).unwrap();
        let stored = permute_qk_rows(&hf, heads).unwrap().to_vec1::<f32>().unwrap();
        for h in 0..heads {
            for j in 0..d / 2 {
                for i in 0..2 {
                    assert_eq!(stored[h * d + 2 * j + i], (h * d + i * (d / 2) + j) as f32);
                }
            }
        }
    }

    #[test]
    fn bad_row_counts_are_errors() {
        let t = Tensor::zeros((10, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = unpermute_qk_rows(&t, 3).unwrap_err().to_string();
        assert!(e.contains("cannot reorder 10 rows as 3 heads"), "{e}");
        assert!(unpermute_qk_rows(&t, 0).is_err());
    }
}
