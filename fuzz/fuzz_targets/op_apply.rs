//! Op decoding (JSON, MessagePack, components) and apply, invert, transform, compose.
//! Body: `coedit_protocol::fuzzing::op_apply` (replayed by `protocol/tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coedit_protocol::fuzzing::op_apply(data));
