//! LSB-first bit streams: bit `b` of a stream is bit `b % 8` (value `1 << (b % 8)`) of byte
//! `b / 8`. Multi-bit fields are written least significant bit first, so a field is the
//! little-endian integer formed by consecutive stream bits (the DEFLATE convention).

/// Appends bits to a byte vector.
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    nacc: u32,
    bits: u64,
}

impl BitWriter {
    /// A writer whose buffer is pre-sized for `bits` bits (the encoder knows the exact cost).
    pub(crate) fn with_capacity_bits(bits: u64) -> Self {
        let cap = usize::try_from(bits.div_ceil(8)).unwrap_or(0);
        BitWriter {
            bytes: Vec::with_capacity(cap),
            acc: 0,
            nacc: 0,
            bits: 0,
        }
    }

    /// Writes the low `n` bits of `value`, least significant first; `n <= 64`.
    pub(crate) fn write_bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        let mut v = value;
        let mut left = n;
        while left > 0 {
            // At most 32 new bits onto < 8 pending ones keeps `acc` within 40 bits.
            let take = left.min(32);
            self.acc |= (v & low_mask(take)) << self.nacc;
            self.nacc += take;
            self.bits += u64::from(take);
            while self.nacc >= 8 {
                self.bytes.push(self.acc as u8);
                self.acc >>= 8;
                self.nacc -= 8;
            }
            v = if take >= 64 { 0 } else { v >> take };
            left -= take;
        }
    }

    /// Writes `q` one-bits (the unary part of a Rice code, before its terminating zero).
    pub(crate) fn write_ones(&mut self, mut q: u64) {
        while q >= 32 {
            self.write_bits(u64::from(u32::MAX), 32);
            q -= 32;
        }
        // q < 32 here, so the cast is lossless.
        self.write_bits(low_mask(q as u32), q as u32);
    }

    /// The bytes, zero-padded to a whole byte, and the number of meaningful bits.
    pub(crate) fn finish(mut self) -> (Vec<u8>, u64) {
        if self.nacc > 0 {
            self.bytes.push(self.acc as u8);
        }
        (self.bytes, self.bits)
    }
}

/// `2^n − 1` for `n <= 64`.
pub(crate) fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Reads an LSB-first bit stream; every read reports running out of bits as `None` instead of
/// panicking, because the stream comes from an untrusted file.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: u64,
    len_bits: u64,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            len_bits: (data.len() as u64).saturating_mul(8),
        }
    }

    /// Bits consumed so far.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Reads `n <= 64` bits as a little-endian field.
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        if self.len_bits - self.pos < u64::from(n) {
            return None;
        }
        let mut out = 0u64;
        let mut got = 0u32;
        while got < n {
            let byte = *self.data.get(usize::try_from(self.pos / 8).ok()?)?;
            let off = (self.pos % 8) as u32;
            let take = (8 - off).min(n - got);
            out |= ((u64::from(byte) >> off) & low_mask(take)) << got;
            got += take;
            self.pos += u64::from(take);
        }
        Some(out)
    }

    /// Counts one-bits up to and including the terminating zero-bit; `None` if the stream ends
    /// first.
    pub(crate) fn read_unary(&mut self) -> Option<u64> {
        let mut q = 0u64;
        loop {
            if self.pos >= self.len_bits {
                return None;
            }
            let byte = *self.data.get(usize::try_from(self.pos / 8).ok()?)?;
            let off = (self.pos % 8) as u32;
            let rest = byte >> off; // the unread bits of this byte, at the bottom
            let ones = (!rest).trailing_zeros().min(8 - off); // run of ones from the bottom
            if ones < 8 - off {
                q += u64::from(ones);
                self.pos += u64::from(ones) + 1;
                return Some(q);
            }
            q += u64::from(ones);
            self.pos += u64::from(ones);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_mixed_fields() {
        let fields: Vec<(u64, u32)> = vec![
            (1, 1),
            (0, 1),
            (0b101, 3),
            (u64::MAX, 64),
            (12345, 17),
            (0, 0),
            (7, 40),
            (1, 63),
        ];
        let mut w = BitWriter::with_capacity_bits(0);
        for &(v, n) in &fields {
            w.write_bits(v, n);
        }
        w.write_ones(70);
        w.write_bits(0, 1);
        let (bytes, bits) = w.finish();
        let expected_bits: u64 = fields.iter().map(|&(_, n)| u64::from(n)).sum::<u64>() + 71;
        assert_eq!(bits, expected_bits);
        assert_eq!(bytes.len() as u64, bits.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &fields {
            assert_eq!(r.read_bits(n), Some(v & low_mask(n)));
        }
        assert_eq!(r.read_unary(), Some(70));
        assert_eq!(r.position(), bits);
    }

    #[test]
    fn lsb_first_layout() {
        let mut w = BitWriter::with_capacity_bits(8);
        w.write_bits(1, 1); // bit 0
        w.write_bits(0b10, 2); // bits 1..3 = 0 then 1
        let (bytes, _) = w.finish();
        assert_eq!(bytes, vec![0b0000_0101]);
    }

    #[test]
    fn reader_reports_end_of_stream() {
        let mut r = BitReader::new(&[0xFF]);
        assert_eq!(r.read_unary(), None);
        let mut r = BitReader::new(&[0x00]);
        assert_eq!(r.read_bits(9), None);
        assert_eq!(r.read_bits(8), Some(0));
        assert_eq!(r.read_unary(), None);
    }
}
