//! Secrets: `GET/POST/PUT/DELETE /system/secrets`.

use serde::{Deserialize, Serialize};

/// A secret; `value` (text) or `rawValue` (bytes, base64 in JSON) on the way
/// in, only `name` and `namespace` on the way out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(rename = "rawValue", default, skip_serializing_if = "Option::is_none", with = "base64_opt")]
    pub raw_value: Option<Vec<u8>>,
}

impl Secret {
    /// The secret's bytes: `rawValue` if given, else `value`.
    pub fn bytes(&self) -> &[u8] {
        match &self.raw_value {
            Some(raw) if !raw.is_empty() => raw,
            _ => self.value.as_bytes(),
        }
    }
}

/// Most bytes a secret may hold.
pub const MAX_SECRET_BYTES: usize = 512 * 1024;

mod base64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&crate::base64::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::base64::decode(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("rawValue is not valid base64")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_are_base64() {
        let s: Secret = serde_json::from_str(r#"{"name":"k","rawValue":"AAEC/w=="}"#).unwrap();
        assert_eq!(s.bytes(), &[0, 1, 2, 255]);
        let s: Secret = serde_json::from_str(r#"{"name":"k","value":"text"}"#).unwrap();
        assert_eq!(s.bytes(), b"text");
        assert!(serde_json::from_str::<Secret>(r#"{"name":"k","rawValue":"!!"}"#).is_err());
        assert!(serde_json::from_str::<Secret>(r#"{"name":"k","valeu":"typo"}"#).is_err());
    }
}
