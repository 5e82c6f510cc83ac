//! Benchmarks of sockeye (not published). Micro-benchmarks live in
//! `benches/` (criterion); `cargo xtask bench` runs them.
#![forbid(unsafe_code)]
