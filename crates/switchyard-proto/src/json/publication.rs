//! The JSON mapping of [`Publication`], the one message whose shape depends
//! on its content: a payload that is a JSON value goes out verbatim as
//! `data`; any other payload (binary, published by a backend) as `data_b64`;
//! a Fossil delta (`"delta": true`) as a JSON string.

use crate::v1::{ClientInfo, Publication};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

impl Serialize for Publication {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("channel", &self.channel)?;
        // A delta of two JSON texts is text (Fossil copies the target's
        // bytes verbatim); the hub sends JSON subscribers only deltas that
        // are valid UTF-8.
        let delta_text = self.delta.then(|| std::str::from_utf8(&self.data).ok()).flatten();
        match super::raw::as_json(&self.data) {
            _ if delta_text.is_some() => map.serialize_entry("data", &delta_text)?,
            Some(raw) => map.serialize_entry("data", raw)?,
            None if self.data.is_empty() => map.serialize_entry("data", &())?,
            None => map.serialize_entry("data_b64", &BASE64.encode(&self.data))?,
        }
        if let Some(offset) = self.offset {
            map.serialize_entry("offset", &offset)?;
        }
        if let Some(epoch) = &self.epoch {
            map.serialize_entry("epoch", epoch)?;
        }
        if let Some(info) = &self.info {
            map.serialize_entry("info", info)?;
        }
        if !self.tags.is_empty() {
            map.serialize_entry("tags", &self.tags)?;
        }
        if delta_text.is_some() {
            map.serialize_entry("delta", &true)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Publication {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PublicationVisitor)
    }
}

struct PublicationVisitor;

impl<'de> Visitor<'de> for PublicationVisitor {
    type Value = Publication;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a publication object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Publication, A::Error> {
        let mut publication = Publication::default();
        let mut data: Option<Box<RawValue>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "channel" => publication.channel = map.next_value()?,
                "data" => data = Some(map.next_value()?),
                "data_b64" => {
                    let text: std::borrow::Cow<'de, str> = map.next_value()?;
                    let data = BASE64.decode(text.as_bytes()).map_err(de::Error::custom)?;
                    publication.data = Bytes::from(data);
                }
                "offset" => publication.offset = map.next_value()?,
                "epoch" => publication.epoch = map.next_value()?,
                "info" => publication.info = map.next_value::<Option<ClientInfo>>()?,
                "tags" => publication.tags = map.next_value()?,
                "delta" => publication.delta = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(raw) = data {
            // A delta is the JSON string's content; full data is the value's text.
            publication.data = match publication.delta {
                true => Bytes::from(serde_json::from_str::<String>(raw.get()).map_err(de::Error::custom)?),
                false => Bytes::copy_from_slice(raw.get().as_bytes()),
            };
        }
        Ok(publication)
    }
}
