//! Frames in JSON: `{"id": 1, "subscribe": {...}}`.
//!
//! A frame is an object holding an optional `id` and exactly one message,
//! keyed by its oneof case. Decoding first splits the object into `id` and
//! raw (unparsed) members, so that an error in the message can still be
//! answered with the frame's id, and an unknown key can be told apart from a
//! malformed message. The message itself decodes through the oneof enum's
//! derived mapping, straight from the original text.

use crate::v1::{ClientFrame, ServerFrame, client_frame, server_frame};
use serde::de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Why a JSON frame could not be decoded. Each kind maps to one documented
/// answer (see docs/protocol.md): only [`FrameError::Malformed`] closes the
/// connection; the others are replies that carry the frame's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not a JSON object: nothing in it can be trusted (close 4001).
    Malformed(String),
    /// The object names no message key, or more than one (error 107).
    Shape { id: u32, message: String },
    /// The message key is not one this protocol knows (error 104).
    Unknown { id: u32, kind: String },
    /// The id or a field of the message is missing or malformed (error 107).
    Invalid { id: u32, message: String },
}

impl FrameError {
    /// The frame's id, if it could be read (0 otherwise).
    pub fn id(&self) -> u32 {
        match self {
            FrameError::Malformed(_) => 0,
            FrameError::Shape { id, .. } | FrameError::Unknown { id, .. } | FrameError::Invalid { id, .. } => *id,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
            FrameError::Shape { message, .. } | FrameError::Invalid { message, .. } => f.write_str(message),
            FrameError::Unknown { kind, .. } => write!(f, "unknown command `{kind}`"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes a client-to-server frame.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let (id, command) = decode_frame::<client_frame::Command>(text)?;
    Ok(ClientFrame { id, command })
}

/// Decodes a server-to-client frame.
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, FrameError> {
    let (id, message) = decode_frame::<server_frame::Message>(text)?;
    Ok(ServerFrame { id, message })
}

/// Encodes a client-to-server frame.
///
/// Fails only for a publish whose `data` is not JSON: the JSON encoding
/// cannot carry it.
pub fn encode_client_frame(frame: &ClientFrame) -> Result<Vec<u8>, serde_json::Error> {
    encode_frame(frame.id, &frame.command)
}

/// Encodes a server-to-client frame. Never fails: a publication whose
/// payload is not JSON goes out as `data_b64`.
pub fn encode_server_frame(frame: &ServerFrame) -> Vec<u8> {
    encode_frame(frame.id, &frame.message).expect("server frames always have a JSON form")
}

/// `{"id": N, "<case>": {...}}`: the oneof enum's own mapping is the
/// one-member object `{"<case>": {...}}`, and the id goes in front of it.
fn encode_frame<T: Serialize>(id: u32, message: &Option<T>) -> Result<Vec<u8>, serde_json::Error> {
    let Some(message) = message else {
        return Ok(if id == 0 { b"{}".to_vec() } else { format!("{{\"id\":{id}}}").into_bytes() });
    };
    let body = serde_json::to_vec(message)?;
    if id == 0 {
        return Ok(body);
    }
    // `body` starts with `{`: splice the id in as the first member.
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(format!("{{\"id\":{id},").as_bytes());
    out.extend_from_slice(&body[1..]);
    Ok(out)
}

fn decode_frame<'a, T: Deserialize<'a>>(text: &'a str) -> Result<(u32, Option<T>), FrameError> {
    let members = serde_json::from_str::<Members<'a>>(text).map_err(|e| FrameError::Malformed(e.to_string()))?.0;
    let mut id = 0;
    let mut body: Option<(Cow<'a, str>, &'a RawValue)> = None;
    let mut extra = false;
    let mut bad_id = None;
    for (key, value) in members {
        if key == "id" {
            match serde_json::from_str::<u32>(value.get()) {
                Ok(v) => id = v,
                Err(_) => bad_id = Some(value.get().to_owned()),
            }
        } else if body.is_none() {
            body = Some((key, value));
        } else {
            extra = true;
        }
    }
    if let Some(raw) = bad_id {
        return Err(FrameError::Invalid { id: 0, message: format!("id must be a positive 32-bit integer, got {raw}") });
    }
    if extra {
        return Err(FrameError::Shape { id, message: "a frame holds exactly one command".into() });
    }
    let Some((kind, value)) = body else {
        return Ok((id, None));
    };
    match T::deserialize(Case { kind: &kind, value }) {
        Ok(message) => Ok((id, Some(message))),
        Err(CaseError::Unknown) => Err(FrameError::Unknown { id, kind: kind.into_owned() }),
        Err(CaseError::Invalid(message)) => Err(FrameError::Invalid { id, message: format!("{kind}: {message}") }),
    }
}

/// The members of a JSON object, in order, values left unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(2);
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// An object key, borrowed from the input unless it held escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// One oneof case given as (key, raw value): feeds an externally tagged
/// enum's derived `Deserialize` without re-serialising anything.
struct Case<'k, 'a> {
    kind: &'k str,
    value: &'a RawValue,
}

#[derive(Debug)]
enum CaseError {
    Unknown,
    Invalid(String),
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Unknown => f.write_str("unknown case"),
            CaseError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CaseError {}

impl de::Error for CaseError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CaseError::Invalid(msg.to_string())
    }
}

impl<'de> Deserializer<'de> for Case<'_, 'de> {
    type Error = CaseError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CaseError> {
        visitor.visit_enum(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CaseError> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de, 'k> EnumAccess<'de> for Case<'k, 'de> {
    type Error = CaseError;
    type Variant = CaseValue<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, CaseValue<'de>), CaseError> {
        let key: de::value::StrDeserializer<'_, de::value::Error> = self.kind.into_deserializer();
        let variant = seed.deserialize(key).map_err(|_| CaseError::Unknown)?;
        Ok((variant, CaseValue(self.value)))
    }
}

struct CaseValue<'a>(&'a RawValue);

impl<'de> VariantAccess<'de> for CaseValue<'de> {
    type Error = CaseError;

    fn unit_variant(self) -> Result<(), CaseError> {
        Err(CaseError::Invalid("expected an object".into()))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, CaseError> {
        let mut deserializer = serde_json::Deserializer::from_str(self.0.get());
        let value = seed.deserialize(&mut deserializer).map_err(|e| CaseError::Invalid(e.to_string()))?;
        deserializer.end().map_err(|e| CaseError::Invalid(e.to_string()))?;
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, CaseError> {
        Err(CaseError::Invalid("expected an object".into()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, CaseError> {
        Err(CaseError::Invalid("expected an object".into()))
    }
}
