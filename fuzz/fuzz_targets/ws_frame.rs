//! The WebSocket frame reader, on any bytes a client sends: frames come out
//! whole, within the size limit, and consume exactly their bytes; anything
//! else is refused, never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_core::wsread::parse;

const MAX_PAYLOAD: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match parse(&mut buf, MAX_PAYLOAD) {
            Ok(Some(frame)) => {
                assert!(frame.payload.len() <= MAX_PAYLOAD);
                // Header (2 + length bytes + 4 mask bytes) and payload, no more.
                assert!(before - buf.len() >= frame.payload.len() + 6);
                assert!(before - buf.len() <= frame.payload.len() + 14);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
