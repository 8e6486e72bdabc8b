//! The byte encoding shared by the packed forms ([`crate::PackedExpr`],
//! [`crate::JobConf`]): unsigned LEB128 lengths and numbers, strings as
//! length and UTF-8 bytes.
//!
//! Only the packers write buffers, from Rust strings, so strings read back
//! are valid UTF-8. Reading never panics whatever the buffer: past its end
//! numbers read as 0, strings as empty and bytes as none.

/// Appends to a buffer.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    pub(crate) fn uint(&mut self, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.uint(n as u64);
    }

    pub(crate) fn int(&mut self, n: i32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Reads a buffer from the front.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub(crate) fn uint(&mut self) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        while let Some(b) = self.byte() {
            n |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        n
    }

    pub(crate) fn len(&mut self) -> usize {
        usize::try_from(self.uint()).unwrap_or(usize::MAX)
    }

    pub(crate) fn int(&mut self) -> i32 {
        let mut b = [0; 4];
        for x in &mut b {
            *x = self.byte().unwrap_or(0);
        }
        i32::from_le_bytes(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (s, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        s
    }

    pub(crate) fn str(&mut self) -> &'a str {
        let n = self.len();
        std::str::from_utf8(self.bytes(n)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_read_back() {
        let mut w = Writer(Vec::new());
        for n in [0, 1, 127, 128, 300, u64::MAX] {
            w.uint(n);
        }
        w.int(-7);
        w.str("héllo");
        w.str("");
        let mut r = Reader(&w.0);
        for n in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.uint(), n);
        }
        assert_eq!(r.int(), -7);
        assert_eq!(r.str(), "héllo");
        assert_eq!(r.str(), "");
        assert!(r.0.is_empty());
        assert_eq!((r.uint(), r.int(), r.str(), r.byte()), (0, 0, "", None));
    }
}
