//! GGML storage types: names as llama.cpp spells them, and which ones petl dequantizes.

use candle_core::quantized::GgmlDType;

/// The storage types [`GgufFile::dequantize`](super::GgufFile::dequantize) accepts.
pub const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";

/// llama.cpp's name for a storage type candle knows, e.g. `Q4_K`.
pub fn type_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// The numeric GGML id of a storage type candle knows (ggml.h `enum ggml_type`).
pub(crate) fn type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Whether petl dequantizes this type. Q8_1 is refused: it is an intermediate type of llama.cpp's
/// matrix products that its tools never write to files, and gguf-py (40-byte blocks) and ggml (36-byte
/// blocks) disagree on its layout, so a file holding one cannot be read with confidence.
pub(crate) fn is_supported(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::Q8_1)
}

/// llama.cpp's name for any GGML type id, including those candle cannot read
/// (gguf-py `GGMLQuantizationType`, gguf 0.19).
pub(crate) fn type_name_of_id(id: u32) -> String {
    let name = match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => return format!("unknown type {id}"),
    };
    name.to_string()
}

/// Ids candle's GGUF reader accepts; any other id makes it reject the whole file.
pub(crate) fn candle_reads_id(id: u32) -> bool {
    matches!(id, 0..=3 | 6..=15 | 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_agree() {
        for dtype in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::BF16,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q8_1,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8K,
        ] {
            assert_eq!(type_name_of_id(type_id(dtype)), type_name(dtype));
            assert!(candle_reads_id(type_id(dtype)));
            assert_eq!(
                SUPPORTED_TYPES.contains(type_name(dtype)),
                is_supported(dtype),
                "{dtype:?}"
            );
        }
        assert_eq!(type_name_of_id(24), "I8");
        assert!(!candle_reads_id(24));
        assert_eq!(type_name_of_id(99), "unknown type 99");
    }
}
