#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::lock_file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::lock_file(data));
