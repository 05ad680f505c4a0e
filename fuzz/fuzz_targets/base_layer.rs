#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::base_layer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::base_layer(data));
