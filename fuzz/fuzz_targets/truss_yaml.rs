#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::truss_yaml.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::truss_yaml(data));
