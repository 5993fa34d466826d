//! Receiving tokens as they are produced.

use crate::output::FinishReason;

/// Whether a streamed row should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating this row.
    Continue,
    /// End this row now ([`FinishReason::Cancelled`]), e.g. because its client went away.
    Stop,
}

/// Receives tokens as generation produces them.
///
/// Greedy decoding and sampling push each row's token as soon as it is chosen; beam search pushes
/// a row's best hypothesis, token by token, once that row's search ends (the returned [`Flow`] is
/// then ignored). Any `FnMut(usize, u32)` closure is a sink that never stops a row.
pub trait TokenSink {
    /// `token` was appended to prompt row `row`.
    fn token(&mut self, row: usize, token: u32) -> Flow;

    /// Row `row` ended; called once per row, after its last token. Does nothing by default.
    fn finished(&mut self, row: usize, reason: FinishReason) {
        let _ = (row, reason);
    }
}

impl<F: FnMut(usize, u32)> TokenSink for F {
    fn token(&mut self, row: usize, token: u32) -> Flow {
        self(row, token);
        Flow::Continue
    }
}

/// A sink that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl TokenSink for NoSink {
    fn token(&mut self, _row: usize, _token: u32) -> Flow {
        Flow::Continue
    }
}
