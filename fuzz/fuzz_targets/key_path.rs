#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| s3serve::fuzzing::key_path(data));
