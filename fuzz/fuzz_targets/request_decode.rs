//! Fuzzes the request decode path: any bytes after the size prefix must decode or be refused,
//! never panic, abort or allocate without bound. Seed corpus: testdata/fuzz/request_decode
//! (frames recorded from real clients). Run with scripts/fuzz.sh.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kora_broker::server::decode_frame(bytes::Bytes::copy_from_slice(data));
});
