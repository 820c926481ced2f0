//! Client and server frames (MessagePack and JSON): decode, validate, round-trip.
//! Body: `coedit_protocol::fuzzing::decode_message` (replayed by `protocol/tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coedit_protocol::fuzzing::decode_message(data));
