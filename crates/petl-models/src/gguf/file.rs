//! The GGUF container: metadata, tensor table, and dequantization of any tensor to f32.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};

use super::error::{GgufError, Result};
use super::{scan, types};

/// One tensor of a GGUF file as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in the file (llama.cpp naming, e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// How its values are stored.
    pub dtype: GgmlDType,
    /// Its dimensions, outermost first: `[out_features, in_features]` for a linear layer's weight,
    /// as in PyTorch (GGUF lists them innermost first; candle's reader reverses them).
    pub shape: Vec<usize>,
    /// Byte range of its data in the file.
    range: std::ops::Range<usize>,
}

impl TensorInfo {
    /// Where the tensor's data lies in the file (checked against the file size at open).
    pub fn byte_range(&self) -> std::ops::Range<usize> {
        self.range.clone()
    }
}

/// An opened GGUF file: header parsed, every tensor's byte range checked against the file size.
///
/// The file is memory-mapped; tensors are read and dequantized one at a time by
/// [`dequantize`](Self::dequantize).
pub struct GgufFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
    metadata: HashMap<String, Value>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens `path` and reads its header with candle's GGUF parser.
    ///
    /// # Errors
    /// [`GgufError::Io`] when the file cannot be opened, [`GgufError::Corrupt`] when the header does not
    /// parse, [`GgufError::UnsupportedTensorType`] naming the first tensor stored in a type petl cannot
    /// dequantize, [`GgufError::BadTensorShape`] for dimensions that cannot describe the data, and
    /// [`GgufError::TensorOutOfBounds`] when a tensor's data runs past the end of a truncated file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated underneath us would fault, which is the
        // contract every mmap-based checkpoint loader (safetensors, candle, llama.cpp) accepts.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let walked = scan::header(&bytes);
        if walked.as_ref().is_some_and(|h| h.alignment == Some(0)) {
            // candle would divide by it.
            return Err(GgufError::Corrupt {
                path,
                message: "general.alignment is 0".into(),
            });
        }
        let content = match Content::read(&mut std::io::Cursor::new(&bytes[..])) {
            Ok(content) => content,
            Err(e) => return Err(explain_header_error(&path, walked, e)),
        };
        let data_start = usize::try_from(content.tensor_data_offset).map_err(|_| GgufError::Corrupt {
            path: path.clone(),
            message: format!("tensor data offset {} overflows", content.tensor_data_offset),
        })?;
        // In file order, so errors name the first offending tensor and listings follow the file.
        let mut infos: Vec<_> = content.tensor_infos.into_iter().collect();
        infos.sort_by(|(a, x), (b, y)| (x.offset, a).cmp(&(y.offset, b)));
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, info) in infos {
            let shape = info.shape.dims().to_vec();
            if !types::is_supported(info.ggml_dtype) {
                return Err(GgufError::UnsupportedTensorType {
                    tensor: name,
                    type_name: types::type_name(info.ggml_dtype).to_string(),
                    type_id: types::type_id(info.ggml_dtype),
                    supported: types::SUPPORTED_TYPES,
                });
            }
            let len = byte_len(&name, &shape, info.ggml_dtype)?;
            let range = usize::try_from(info.offset)
                .ok()
                .and_then(|offset| data_start.checked_add(offset))
                .and_then(|start| Some(start..start.checked_add(len)?))
                .filter(|range| range.end <= bytes.len())
                .ok_or_else(|| GgufError::TensorOutOfBounds {
                    path: path.clone(),
                    tensor: name.clone(),
                    start: content.tensor_data_offset.saturating_add(info.offset),
                    end: content
                        .tensor_data_offset
                        .saturating_add(info.offset)
                        .saturating_add(len as u64),
                    file_len: bytes.len() as u64,
                })?;
            tensors.push(TensorInfo {
                name,
                dtype: info.ggml_dtype,
                shape,
                range,
            });
        }
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            path,
            bytes,
            metadata: content.metadata,
            tensors,
            index,
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every metadata entry, as candle parsed it.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }

    /// Every tensor, in the order of their data in the file.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name` (GGUF naming), if there is one.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Reads tensor `name` and dequantizes it to an f32 tensor on `device`, with candle's
    /// dequantization kernels (the same arithmetic as ggml's `dequantize_row_*`).
    ///
    /// # Errors
    /// [`GgufError::NoSuchTensor`] for an unknown name; candle errors from dequantization.
    pub fn dequantize(&self, name: &str, device: &Device) -> Result<Tensor> {
        let info = self.tensor_info(name).ok_or_else(|| GgufError::NoSuchTensor {
            name: name.to_string(),
        })?;
        // `open` checked the range against the file size.
        let bytes = &self.bytes[info.range.clone()];
        Ok(dequantize_bytes(bytes, info.dtype, &info.shape)?.to_device(device)?)
    }

    /// The tokenizer described by the `tokenizer.ggml.*` metadata, built as transformers builds it
    /// from the same file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).
    ///
    /// # Errors
    /// [`GgufError::MissingMetadata`] when the file has no tokenizer, [`GgufError::UnsupportedTokenizer`]
    /// for a `tokenizer.ggml.model` other than `gpt2` or `llama`, [`GgufError::InvalidMetadata`] for
    /// inconsistent tables, [`GgufError::Tokenizer`] when the `tokenizers` library rejects them.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        super::tokenizer::build(self)
    }

    /// Whether the file describes a tokenizer at all (`tokenizer.ggml.model` is present).
    pub fn has_tokenizer(&self) -> bool {
        self.value("tokenizer.ggml.model").is_some()
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Result<Option<&str>> {
        self.metadata_str("tokenizer.chat_template")
    }

    /// The metadata value under `key`, if present.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// An unsigned integer metadata value (any integer width; negative values are an error).
    pub fn metadata_u64(&self, key: &str) -> Result<Option<u64>> {
        self.value(key).map(|v| as_u64(key, v)).transpose()
    }

    /// A floating-point metadata value (f32 or f64; integers are accepted and converted).
    pub fn metadata_f64(&self, key: &str) -> Result<Option<f64>> {
        self.value(key)
            .map(|v| match v {
                Value::F32(x) => Ok(f64::from(*x)),
                Value::F64(x) => Ok(*x),
                other => as_u64(key, other)
                    .map(|x| x as f64)
                    .map_err(|_| mistyped(key, "a number", other)),
            })
            .transpose()
    }

    /// A string metadata value.
    pub fn metadata_str(&self, key: &str) -> Result<Option<&str>> {
        self.value(key)
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(mistyped(key, "a string", other)),
            })
            .transpose()
    }

    /// A boolean metadata value.
    pub fn metadata_bool(&self, key: &str) -> Result<Option<bool>> {
        self.value(key)
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                other => Err(mistyped(key, "a boolean", other)),
            })
            .transpose()
    }

    /// An array-of-strings metadata value.
    pub fn metadata_strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.value(key)
            .map(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.as_str()),
                        other => Err(mistyped(key, "an array of strings", other)),
                    })
                    .collect(),
                other => Err(mistyped(key, "an array of strings", other)),
            })
            .transpose()
    }

    /// An array-of-integers metadata value.
    pub fn metadata_ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.value(key)
            .map(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .map(|item| as_i64(item).ok_or_else(|| mistyped(key, "an array of integers", item)))
                    .collect(),
                other => Err(mistyped(key, "an array of integers", other)),
            })
            .transpose()
    }

    /// An array-of-numbers metadata value (f32, f64 or integers), as f64.
    pub fn metadata_floats(&self, key: &str) -> Result<Option<Vec<f64>>> {
        self.value(key)
            .map(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::F32(x) => Ok(f64::from(*x)),
                        Value::F64(x) => Ok(*x),
                        other => as_i64(other)
                            .map(|x| x as f64)
                            .ok_or_else(|| mistyped(key, "an array of numbers", other)),
                    })
                    .collect(),
                other => Err(mistyped(key, "an array of numbers", other)),
            })
            .transpose()
    }
}

/// Turns candle's header error into the most precise error petl can give: an unknown storage type
/// is named with its tensor; anything else is reported as a corrupt header.
fn explain_header_error(path: &Path, walked: Option<scan::Header>, err: candle_core::Error) -> GgufError {
    if let Some(header) = walked {
        let unknown = header
            .tensor_types
            .into_iter()
            .find(|(_, id)| !types::candle_reads_id(*id));
        if let Some((tensor, type_id)) = unknown {
            return GgufError::UnsupportedTensorType {
                tensor,
                type_name: types::type_name_of_id(type_id),
                type_id,
                supported: types::SUPPORTED_TYPES,
            };
        }
    }
    GgufError::Corrupt {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

/// Bytes a tensor of this shape and type occupies, after checking the shape can hold whole blocks.
fn byte_len(name: &str, shape: &[usize], dtype: GgmlDType) -> Result<usize> {
    let bad = |reason: String| GgufError::BadTensorShape {
        tensor: name.to_string(),
        shape: shape.to_vec(),
        reason,
    };
    let Some(&last) = shape.last() else {
        return Err(bad("a tensor needs at least one dimension".into()));
    };
    let elems = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("the element count overflows".into()))?;
    let block = dtype.block_size();
    if last % block != 0 {
        return Err(bad(format!(
            "rows of {last} values are not whole {} blocks of {block}",
            types::type_name(dtype)
        )));
    }
    (elems / block)
        .checked_mul(dtype.type_size())
        .ok_or_else(|| bad("the byte size overflows".into()))
}

/// Alignment that satisfies every block type (the strictest, f32 fields, needs 4).
const BLOCK_ALIGN: usize = 8;

/// Dequantizes raw GGML data on the CPU. candle reinterprets the bytes as blocks in place, which
/// needs them aligned; a mapped file's tensors are (GGUF aligns tensor data to 32 bytes by default),
/// but a file with a smaller `general.alignment` is copied to an aligned buffer first.
pub(crate) fn dequantize_bytes(
    bytes: &[u8],
    dtype: GgmlDType,
    shape: &[usize],
) -> candle_core::Result<Tensor> {
    let buffer: Vec<u8>;
    let aligned = if bytes.as_ptr().align_offset(BLOCK_ALIGN) == 0 {
        bytes
    } else {
        buffer = {
            let mut b = vec![0u8; bytes.len() + BLOCK_ALIGN];
            let offset = b.as_ptr().align_offset(BLOCK_ALIGN);
            let Some(slot) = b.get_mut(offset..offset + bytes.len()) else {
                candle_core::bail!("cannot align a {}-byte buffer", bytes.len())
            };
            slot.copy_from_slice(bytes);
            b
        };
        let offset = buffer.as_ptr().align_offset(BLOCK_ALIGN);
        &buffer[offset..offset + bytes.len()]
    };
    let storage = QStorage::from_data(Cow::Borrowed(aligned), &Device::Cpu, dtype)?;
    QTensor::new(storage, shape)?.dequantize(&Device::Cpu)
}

fn as_u64(key: &str, v: &Value) -> Result<u64> {
    as_i64(v)
        .and_then(|x| u64::try_from(x).ok())
        .or(match v {
            Value::U64(x) => Some(*x),
            _ => None,
        })
        .ok_or_else(|| mistyped(key, "a non-negative integer", v))
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn mistyped(key: &str, expected: &'static str, found: &Value) -> GgufError {
    let found = match found {
        Value::String(s) => format!("the string {:?}", truncate(s)),
        Value::Array(items) => format!("an array of {} values", items.len()),
        other => format!("{other:?}"),
    };
    GgufError::MetadataType {
        key: key.to_string(),
        expected,
        found,
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_len_checks_blocks_and_overflow() {
        assert_eq!(byte_len("t", &[2, 64], GgmlDType::Q8_0).unwrap(), 2 * 2 * 34);
        assert_eq!(byte_len("t", &[3], GgmlDType::F32).unwrap(), 12);
        let e = byte_len("t", &[2, 48], GgmlDType::Q4_0).unwrap_err().to_string();
        assert!(e.contains("not whole Q4_0 blocks of 32"), "{e}");
        let e = byte_len("t", &[usize::MAX, 4], GgmlDType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows"), "{e}");
        assert!(byte_len("t", &[], GgmlDType::F32).is_err());
    }

    #[test]
    fn misaligned_data_is_copied_not_rejected() {
        let mut buf = [0u8; 16];
        let at = (0..8).find(|&o| buf[o..].as_ptr().align_offset(4) != 0).unwrap();
        buf[at..at + 4].copy_from_slice(&1.5f32.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&(-2.0f32).to_le_bytes());
        let t = dequantize_bytes(&buf[at..at + 8], GgmlDType::F32, &[2]).unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
    }

    #[test]
    fn integer_metadata_widens_and_rejects_negatives() {
        assert_eq!(as_u64("k", &Value::U8(7)).unwrap(), 7);
        assert_eq!(as_u64("k", &Value::I32(7)).unwrap(), 7);
        assert_eq!(as_u64("k", &Value::U64(u64::MAX)).unwrap(), u64::MAX);
        let e = as_u64("k", &Value::I32(-1)).unwrap_err().to_string();
        assert_eq!(
            e,
            "GGUF metadata key `k` should be a non-negative integer, found I32(-1)"
        );
        let e = as_u64("k", &Value::String("x".into())).unwrap_err().to_string();
        assert!(e.ends_with("found the string \"x\""), "{e}");
    }
}
