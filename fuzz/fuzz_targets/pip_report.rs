#![no_main]
// Calls the same entry as tests/fuzz_corpus.rs: imgbake::fuzzing::pip_report.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgbake::fuzzing::pip_report(data));
