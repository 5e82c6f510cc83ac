//! Benchmarks of sockeye (not published). Micro-benchmarks live in
//! `benches/` (criterion); `cargo xtask bench` runs them.
#![forbid(unsafe_code)]

/// A JSON document of about `len` bytes, shaped like chat or telemetry
/// messages (repeated keys, varying values): what permessage-deflate meets.
pub fn json_payload(len: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0u64;
    while out.len() < len {
        if i > 0 {
            out.push(',');
        }
        let x = i.wrapping_mul(2_654_435_761) % 100_000;
        out.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"room\":\"lobby\",\"text\":\"message number {x}\",\"ts\":{}}}",
            x % 97,
            1_700_000_000 + i * 17
        ));
        i += 1;
    }
    out.push(']');
    out
}

/// Prose-like text of about `len` bytes.
pub fn text_payload(len: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "socket",
        "frames",
        "of",
        "a",
        "message",
        "carry",
        "text",
        "and",
        "compression",
        "keeps",
        "them",
        "small",
        "when",
        "they",
        "repeat",
        "words",
        "like",
        "these",
        "do",
    ];
    let mut out = String::with_capacity(len + 16);
    let mut i = 0usize;
    while out.len() < len {
        out.push_str(WORDS[(i * 7 + i / 5) % WORDS.len()]);
        out.push(if i % 13 == 12 { '.' } else { ' ' });
        i += 1;
    }
    out
}
