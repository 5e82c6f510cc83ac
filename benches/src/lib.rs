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

/// The address of a peer server (`--addr HOST:PORT`, default
/// `127.0.0.1:9001`), from the command line.
pub fn addr_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
}

/// Whether a flag is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Runs `handle` for every connection accepted on `--addr`, on a
/// current-thread runtime (every server of the benchmark uses the same
/// flavour), printing `listening on ADDR` once ready.
pub fn serve<F, Fut>(handle: F) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(addr_arg()).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            tokio::task::spawn_local(handle(tcp));
        }
    })
}
