//! A client-side `Connection` fed arbitrary peer bytes in arbitrary pieces,
//! echoing every message; see `common` for the oracles.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sockeye_proto::Role;

fuzz_target!(|data: &[u8]| common::run(Role::Client, data));
