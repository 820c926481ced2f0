//! The document submit path: submits, resends, restores and reads against a model.
//! Body: `coedit_protocol::fuzzing::document_submit` (replayed by `protocol/tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coedit_protocol::fuzzing::document_submit(data));
