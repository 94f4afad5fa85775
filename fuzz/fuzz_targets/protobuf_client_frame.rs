//! The protobuf command decoder, on any bytes: it may refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = switchyard_proto::v1::ClientFrame::decode(data) {
        let _ = frame.encode_to_vec();
    }
});
