#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::registry_auth.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::registry_auth(data));
