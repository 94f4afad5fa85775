//! The Envelope decoder, on any bytes (what Redis hands a node): it may
//! refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let _ = switchyard_proto::v1::Envelope::decode(data);
});
