//! The Yjs boundary: y-websocket and Hocuspocus frames, updates, awareness updates.
//! Body: `coedit_protocol::fuzzing::yjs_update` (replayed by `protocol/tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coedit_protocol::fuzzing::yjs_update(data));
