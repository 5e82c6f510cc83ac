//! Topics as subjects: topic `T` under prefix `P` is `P.t.T'`, with `T'`
//! one subject token (see [`NatsBroker`](super::NatsBroker)).

use std::fmt::Write as _;

use super::Inner;

impl Inner {
    /// The subject of `topic`.
    pub(super) fn subject(&self, topic: &str) -> String {
        let mut s = format!("{}.t.", self.config.link.prefix);
        encode(topic, &mut s);
        s
    }
}

/// `topic` as one subject token (see [`NatsBroker`](super::NatsBroker)).
fn encode(topic: &str, out: &mut String) {
    if topic.is_empty() {
        out.push('%');
    }
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The topic a subject token names, if it is one [`encode`] writes.
    fn decode(token: &str) -> Option<String> {
        if token == "%" {
            return Some(String::new());
        }
        let mut bytes = Vec::with_capacity(token.len());
        let mut rest = token.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    #[test]
    fn topics_are_one_subject_token_and_come_back() {
        for topic in [
            "chat:lobby",
            "a.b",
            "a b\tc",
            "*",
            ">",
            "100%",
            "ünï",
            "",
            "x%2",
        ] {
            let mut token = String::new();
            encode(topic, &mut token);
            assert!(!token.is_empty(), "{topic:?}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-:%".contains(&b)),
                "{topic:?} -> {token}"
            );
            assert_eq!(decode(&token).as_deref(), Some(topic), "{token}");
        }
        let mut token = String::new();
        encode("chat:lobby", &mut token);
        assert_eq!(token, "chat:lobby");
        for bad in ["%", "%4", "%zz", "%ff"] {
            // "%" alone is the empty topic; the others are not ours.
            assert_eq!(decode(bad).is_some(), bad == "%", "{bad}");
        }
    }
}
