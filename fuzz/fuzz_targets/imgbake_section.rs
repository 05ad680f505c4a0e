#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::imgbake_section.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::imgbake_section(data));
