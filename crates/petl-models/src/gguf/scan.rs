//! A minimal walk over a GGUF header that keeps each tensor's name and type id, and
//! `general.alignment`.
//!
//! It covers two gaps in candle's reader: a tensor type candle does not know makes it reject the whole
//! file with an error that names neither the tensor nor the type, and a `general.alignment` of 0 makes
//! it divide by zero. The walk skips other metadata values without interpreting them and gives up
//! (returns `None`) on anything malformed, leaving the report to candle's parser.

/// Nested arrays deeper than this are treated as malformed (candle uses the same bound).
const MAX_DEPTH: usize = 64;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u64()?;
        Some(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    /// Skips one metadata value of the given GGUF value type.
    fn skip_value(&mut self, value_type: u32, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match value_type {
            8 => {
                let len = self.u64()?;
                self.take(len)?;
            }
            9 => {
                let elem_type = self.u32()?;
                let len = self.u64()?;
                match fixed_size(elem_type) {
                    Some(size) => {
                        self.take(len.checked_mul(size)?)?;
                    }
                    None => {
                        for _ in 0..len {
                            self.skip_value(elem_type, depth + 1)?;
                        }
                    }
                }
            }
            other => {
                self.take(fixed_size(other)?)?;
            }
        }
        Some(())
    }
}

/// Byte size of a fixed-size GGUF value type; `None` for strings, arrays and unknown types.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// What the walk keeps of a header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `general.alignment` when it is stored as an integer.
    pub alignment: Option<u64>,
    /// `(name, GGML type id)` of every tensor, in table order.
    pub tensor_types: Vec<(String, u32)>,
}

/// Walks a GGUF header (versions 2 and 3).
pub(crate) fn header(bytes: &[u8]) -> Option<Header> {
    let mut c = Cursor { bytes, pos: 0 };
    if c.take(4)? != b"GGUF" {
        return None;
    }
    if !matches!(c.u32()?, 2 | 3) {
        return None;
    }
    let n_tensors = c.u64()?;
    let n_kv = c.u64()?;
    let mut alignment = None;
    for _ in 0..n_kv {
        let key = c.string()?;
        let value_type = c.u32()?;
        let start = c.pos;
        c.skip_value(value_type, 0)?;
        if key == "general.alignment" {
            alignment = integer(value_type, &bytes[start..c.pos]);
        }
    }
    let mut tensor_types = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        c.take(u64::from(n_dims).checked_mul(8)?)?;
        let type_id = c.u32()?;
        c.u64()?;
        tensor_types.push((name, type_id));
    }
    Some(Header {
        alignment,
        tensor_types,
    })
}

/// The value of an integer-typed metadata entry from its bytes (negative values are `None`).
fn integer(value_type: u32, b: &[u8]) -> Option<u64> {
    Some(match value_type {
        0 => u64::from(*b.first()?),
        1 => u64::try_from(i8::from_le_bytes(b.try_into().ok()?)).ok()?,
        2 => u64::from(u16::from_le_bytes(b.try_into().ok()?)),
        3 => u64::try_from(i16::from_le_bytes(b.try_into().ok()?)).ok()?,
        4 => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
        5 => u64::try_from(i32::from_le_bytes(b.try_into().ok()?)).ok()?,
        10 => u64::from_le_bytes(b.try_into().ok()?),
        11 => u64::try_from(i64::from_le_bytes(b.try_into().ok()?)).ok()?,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(kv: &[u8], n_kv: u64, tensors: &[(&str, u32)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b.extend(kv);
        for (name, ty) in tensors {
            b.extend((name.len() as u64).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(2u32.to_le_bytes());
            b.extend(4u64.to_le_bytes());
            b.extend(8u64.to_le_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn walks_metadata_and_tensor_table() {
        // "k" = array of 2 strings ["ab", "c"]
        let mut kv = Vec::new();
        kv.extend(1u64.to_le_bytes());
        kv.extend(b"k");
        kv.extend(9u32.to_le_bytes());
        kv.extend(8u32.to_le_bytes());
        kv.extend(2u64.to_le_bytes());
        for s in ["ab", "c"] {
            kv.extend((s.len() as u64).to_le_bytes());
            kv.extend(s.as_bytes());
        }
        // "general.alignment" = u32 0
        kv.extend(17u64.to_le_bytes());
        kv.extend(b"general.alignment");
        kv.extend(4u32.to_le_bytes());
        kv.extend(0u32.to_le_bytes());
        let bytes = build(&kv, 2, &[("a.weight", 0), ("b.weight", 20)]);
        let h = header(&bytes).unwrap();
        assert_eq!(
            h.tensor_types,
            vec![("a.weight".to_string(), 0), ("b.weight".to_string(), 20)]
        );
        assert_eq!(h.alignment, Some(0));
        // Every prefix of the header is malformed, never a panic.
        for cut in 0..bytes.len() {
            assert!(header(&bytes[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn absurd_lengths_are_malformed() {
        let mut kv = Vec::new();
        kv.extend(1u64.to_le_bytes());
        kv.extend(b"k");
        kv.extend(9u32.to_le_bytes());
        kv.extend(6u32.to_le_bytes());
        kv.extend(u64::MAX.to_le_bytes());
        assert!(header(&build(&kv, 1, &[])).is_none());
        assert_eq!(integer(5, &(-3i32).to_le_bytes()), None);
        assert_eq!(integer(2, &7u16.to_le_bytes()), Some(7));
    }
}
