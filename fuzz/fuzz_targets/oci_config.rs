#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::oci_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::oci_config(data));
