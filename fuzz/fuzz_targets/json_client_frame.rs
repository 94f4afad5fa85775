//! The JSON command decoder, on any text: it may refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(frame) = switchyard_proto::json::decode_client_frame(text) {
            // What decodes must encode again.
            let _ = switchyard_proto::json::encode_client_frame(&frame);
        }
    }
});
