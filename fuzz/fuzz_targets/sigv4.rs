#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| s3serve::fuzzing::sigv4(data));
