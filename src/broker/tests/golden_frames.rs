//! Every request frame recorded from real clients (testdata/frames, see capture.py there)
//! decodes through the same path the server uses, as the API and version its name says.

use std::path::PathBuf;

use bytes::Bytes;
use kora_broker::server::{decode_frame, Decoded};

#[test]
fn recorded_client_frames_decode() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/frames");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata/frames") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let name = path.file_stem().expect("stem").to_string_lossy().to_string();
        // <client>-<api key>-v<version>-<n>
        let parts: Vec<&str> = name.split('-').collect();
        let key: i16 = parts[1].parse().expect("api key in name");
        let version: i16 = parts[2].trim_start_matches('v').parse().expect("version in name");
        let frame = Bytes::from(std::fs::read(&path).expect("read"));
        match decode_frame(frame) {
            Ok(Decoded::Request { api_key, version: v, .. }) => {
                assert_eq!((api_key as i16, v), (key, version), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        n += 1;
    }
    assert!(n >= 20, "expected the recorded corpus, found {n} frames");
}

#[test]
fn truncations_of_recorded_frames_are_rejected_not_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/frames");
    for entry in std::fs::read_dir(&dir).expect("testdata/frames") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let frame = Bytes::from(std::fs::read(&path).expect("read"));
        for cut in 0..frame.len() {
            // Any prefix must decode or be refused; flipping bytes must not panic either.
            let _ = decode_frame(frame.slice(..cut));
            let mut flipped = frame.to_vec();
            flipped[cut] ^= 0xff;
            let _ = decode_frame(Bytes::from(flipped));
        }
    }
}
