//! UTF-8: an incremental validator that fails at the first invalid byte, even
//! when a code point is split across reads or fragments (RFC 6455 §8.1,
//! Autobahn 6.4), and [`Utf8Bytes`], a `Bytes` known to hold UTF-8.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// The payload is not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Below this length simdutf8 does not use SIMD (its chunk is 64 bytes).
const SHORT: usize = 64;

/// Validates UTF-8 fed in arbitrary pieces.
///
/// `feed` fails as soon as the bytes seen so far cannot be the start of valid
/// UTF-8; a code point cut at the end of a piece is kept (at most 3 bytes) and
/// completed by the next piece. `finish` fails if a code point is left open.
///
/// ```
/// use sockeye_proto::utf8::Utf8Validator;
/// let mut v = Utf8Validator::new();
/// let euro = "€".as_bytes(); // e2 82 ac
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
/// // 0xC0 can never start a code point: rejected at once.
/// assert!(Utf8Validator::new().feed(&[b'a', 0xC0]).is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Forgets any open code point.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]).ok_or(InvalidUtf8)?;
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            let filled = have + take;
            match simdutf8::compat::from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                // Still a valid prefix of a code point: wait for more.
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        if data.len() < SHORT {
            // simdutf8 hands pieces this short to `core::str::from_utf8`,
            // which walks an unaligned one byte at a time; most short
            // messages are ASCII, which `is_ascii` checks a word at a time
            // (a fifth of the instructions on a 20-byte payload).
            if data.is_ascii() {
                return Ok(());
            }
        } else if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                // A cut code point is at most 3 bytes long, or it would be complete.
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the stream: fails if a code point is left incomplete. The
    /// validator is then ready for a new stream.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let open = self.partial_len != 0;
        self.partial_len = 0;
        if open { Err(InvalidUtf8) } else { Ok(()) }
    }

    /// Whether a code point is open (more bytes are needed).
    pub fn is_incomplete(&self) -> bool {
        self.partial_len != 0
    }
}

/// The length of the sequence a lead byte starts, or `None` for a byte that
/// cannot start one.
fn sequence_len(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7F => Some(1),
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

/// Validates a whole buffer.
pub fn validate(data: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(data)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

// ===== impl Utf8Bytes =====

/// An immutable, cheaply cloned UTF-8 string: `Bytes` whose content was
/// validated once when it was made.
///
/// Reading it as a `&str` ([`as_str`](Self::as_str), `Deref`) runs a SIMD
/// check (tens of GB/s) instead of an `unsafe` unchecked cast: the crate
/// forbids `unsafe` outside masking. Keep the `&str` if you need it often.
///
/// ```
/// use sockeye_proto::Utf8Bytes;
/// let s = Utf8Bytes::from("héllo");
/// assert_eq!(s.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// A string from static text, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes that a validator of this crate has accepted.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The invariant makes this infallible; the fallback is never taken.
        simdutf8::basic::from_utf8(&self.0).unwrap_or_default()
    }

    /// The bytes of the text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Converts into the underlying `Bytes`.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        validate(&bytes)?;
        Ok(Self(bytes))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Self::try_from(Bytes::from(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut prev = 0;
        for &c in cuts {
            v.feed(&data[prev..c])?;
            prev = c;
        }
        v.feed(&data[prev..])?;
        v.finish()
    }

    #[test]
    fn agrees_with_std_at_every_single_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€b𝄞c".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xe0\x80\xaf",
            b"abc\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xed\x9f\xbf\xee\x80\x80",
            b"",
        ];
        for s in samples {
            let expected = std::str::from_utf8(s).is_ok();
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    assert_eq!(
                        feed_split(s, &[a, b]).is_ok(),
                        expected,
                        "{s:?} cut {a},{b}"
                    );
                }
            }
        }
    }

    /// Pieces on both sides of the 64-byte line between the ASCII check and
    /// simdutf8, with one odd byte at every position: a continuation byte,
    /// a lead byte cut at the end, a never-valid byte, a whole code point.
    #[test]
    fn short_and_long_pieces_agree_with_std() {
        let odd: &[&[u8]] = &[b"\x80", b"\xe2\x82", b"\xff", "€".as_bytes(), b"z"];
        for len in 0..=SHORT + 8 {
            for pos in 0..=len {
                for o in odd {
                    let mut data = vec![b'a'; len];
                    data.splice(pos..pos, o.iter().copied());
                    let expected = std::str::from_utf8(&data).is_ok();
                    let mut v = Utf8Validator::new();
                    let got = v.feed(&data).and_then(|()| v.finish()).is_ok();
                    assert_eq!(got, expected, "{o:?} at {pos} of {len}");
                }
            }
        }
    }

    #[test]
    fn fails_fast_before_the_end() {
        // The invalid byte comes first; the rest never needs to arrive.
        let mut v = Utf8Validator::new();
        v.feed("ok".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xF5]), Err(InvalidUtf8));
        // A surrogate is rejected as soon as its second byte is seen.
        let mut v = Utf8Validator::new();
        v.feed(&[0xED]).unwrap();
        assert_eq!(v.feed(&[0xA0]), Err(InvalidUtf8));
    }

    #[test]
    fn open_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert!(v.is_incomplete());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert!(!v.is_incomplete());
    }

    #[test]
    fn byte_by_byte_long_text() {
        let text = "Hello-µ@ßöäüàá-UTF-8!! ∮ E⋅da = Q, n → ∞ 𝄞".repeat(5);
        let mut v = Utf8Validator::new();
        for b in text.as_bytes() {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        v.finish().unwrap();
    }

    #[test]
    fn utf8_bytes_conversions() {
        let s = Utf8Bytes::from(String::from("abc"));
        assert_eq!(s, "abc");
        assert_eq!(s.len(), 3);
        assert_eq!(Bytes::from(s.clone()), Bytes::from_static(b"abc"));
        assert!(Utf8Bytes::try_from(vec![0xffu8]).is_err());
        assert_eq!(format!("{s:?}"), "\"abc\"");
    }
}
