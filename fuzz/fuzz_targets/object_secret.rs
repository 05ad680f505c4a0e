#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::object_secret.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::object_secret(data));
