//! Storage precision of diff values.

use crate::error::SparseError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How values are stored on disk. Decoding always widens to f32; narrower types trade
/// precision of the update for half the value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueDType {
    /// IEEE binary32, bit-exact.
    F32,
    /// IEEE binary16 (max 65504), rounded to nearest even.
    F16,
    /// bfloat16 (f32 range, 8-bit mantissa), rounded to nearest even.
    Bf16,
}

impl ValueDType {
    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            ValueDType::F32 => 4,
            ValueDType::F16 | ValueDType::Bf16 => 2,
        }
    }

    /// The name used in the header and on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueDType::F32 => "f32",
            ValueDType::F16 => "f16",
            ValueDType::Bf16 => "bf16",
        }
    }

    /// Rounds `v` to this dtype and back, i.e. what a decoder will see.
    pub fn round_trip(self, v: f32) -> f32 {
        match self {
            ValueDType::F32 => v,
            ValueDType::F16 => half::f16::from_f32(v).to_f32(),
            ValueDType::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

impl fmt::Display for ValueDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValueDType {
    type Err = SparseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(ValueDType::F32),
            "f16" => Ok(ValueDType::F16),
            "bf16" => Ok(ValueDType::Bf16),
            _ => Err(SparseError::UnknownDType(s.to_owned())),
        }
    }
}
