//! Builds the Rust types for proto/ with protox (no system `protoc`) and
//! prost, and derives their JSON mapping from the same descriptors.
//!
//! JSON rules, applied to every message of the client protocol:
//! - field names as in the .proto (snake_case), integers as JSON numbers;
//! - missing fields take their proto3 default; unknown fields are ignored;
//! - `optional` scalars, message fields and empty repeated fields are left out;
//! - oneof cases are keyed by their field name (`{"subscribe": {...}}`);
//! - `bytes data` and `bytes info` carry a JSON value verbatim (see
//!   `src/json/raw.rs`), left out when empty;
//! - `ClientFrame`/`ServerFrame` put `id` beside the oneof case
//!   (`src/json/frame.rs`); `Publication` has its own mapping (`data` or
//!   `data_b64`, `src/json/publication.rs`).

use prost_types::field_descriptor_proto::{Label, Type};
use std::path::PathBuf;

const FILES: &[&str] = &["switchyard/v1/client.proto", "switchyard/v1/cluster.proto"];
const JSON_FILE: &str = "switchyard/v1/client.proto";
const FRAMES: &[&str] = &["ClientFrame", "ServerFrame"];
/// Messages whose JSON mapping is written by hand in `src/json/`.
const HAND_MAPPED: &[&str] = &["Publication"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(FILES, [&root])?;

    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    for file in fds.file.iter().filter(|f| f.name() == JSON_FILE) {
        let package = file.package();
        for message in &file.message_type {
            let name = message.name();
            let path = format!(".{package}.{name}");
            if HAND_MAPPED.contains(&name) {
                continue;
            }
            let is_frame = FRAMES.contains(&name);
            if !is_frame {
                config.type_attribute(&path, "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]");
            }
            for oneof in &message.oneof_decl {
                if oneof.name().starts_with('_') {
                    continue; // synthetic oneof of a proto3 `optional`
                }
                config.type_attribute(
                    format!("{path}.{}", oneof.name()),
                    "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
                );
            }
            for field in &message.field {
                let field_path = format!("{path}.{}", field.name());
                let in_real_oneof = field.oneof_index.is_some() && !field.proto3_optional();
                if in_real_oneof {
                    continue;
                }
                let is_map = field.label() == Label::Repeated
                    && field.type_name().rsplit('.').next().is_some_and(|t| {
                        message
                            .nested_type
                            .iter()
                            .any(|n| n.name() == t && n.options.as_ref().is_some_and(|o| o.map_entry()))
                    });
                let attribute = if is_map && field.name() == "tags" {
                    // Tags are optional: no `"tags": {}` on every publish.
                    Some("#[serde(skip_serializing_if = \"std::collections::HashMap::is_empty\")]")
                } else if is_map {
                    None // a map is an object, written even when empty
                } else if field.label() == Label::Repeated {
                    Some("#[serde(skip_serializing_if = \"Vec::is_empty\")]")
                } else if field.proto3_optional() || field.r#type() == Type::Message {
                    Some("#[serde(skip_serializing_if = \"Option::is_none\")]")
                } else if field.r#type() == Type::Bytes && (field.name() == "data" || field.name() == "info") {
                    // A JSON value, left out when there is none.
                    Some("#[serde(with = \"crate::json::raw\", skip_serializing_if = \"bytes::Bytes::is_empty\")]")
                } else {
                    None
                };
                if let Some(attribute) = attribute {
                    config.field_attribute(&field_path, attribute);
                }
            }
        }
    }
    config.compile_fds(fds)?;
    Ok(())
}
