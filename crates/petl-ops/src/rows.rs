//! Shape helpers for ops that take `[..., d]` inputs as rows of `d` without reshaping them.
//!
//! A candle reshape is a graph node even when it changes nothing, and candle's backward pass
//! accumulates every node's input gradient through a zero-filled buffer: a reshape on either
//! side of an op costs two extra passes over a full-size gradient. petl's ops fold the leading
//! dimensions inside instead.

use candle_core::{Layout, Result, Shape, Tensor};

/// `b` as a vector of `n`, reshaped only when it is not one already.
pub(crate) fn as_vector(b: &Tensor, n: usize) -> Result<Tensor> {
    if b.dims() == [n] {
        Ok(b.clone())
    } else {
        b.reshape(n)
    }
}

/// A contiguous layout as rows of its last dimension: `[..., d]` → `[rows, d]`, same storage.
pub(crate) fn as_rows(l: &Layout) -> Result<Layout> {
    let d = *l.dims().last().unwrap_or(&1);
    let rows = l.shape().elem_count() / d.max(1);
    if !l.is_contiguous() {
        return Err(candle_core::Error::Msg("strided input to a row-wise op".into()));
    }
    Ok(Layout::contiguous_with_offset((rows, d), l.start_offset()))
}

/// `dims` with the last dimension replaced by `last`.
pub(crate) fn with_last(dims: &[usize], last: usize) -> Shape {
    let mut out = dims.to_vec();
    if let Some(l) = out.last_mut() {
        *l = last;
    }
    Shape::from(out)
}
