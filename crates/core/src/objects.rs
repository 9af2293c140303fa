//! Configuration objects as the domain sees them: keys, references, ids and validation.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Identifies one object inside an environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    pub obj_code: String,
    pub id: String,
}

impl ObjectKey {
    pub fn new(obj_code: impl Into<String>, id: impl Into<String>) -> Self {
        Self { obj_code: obj_code.into(), id: id.into() }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.obj_code, self.id)
    }
}

/// A named link to another object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub field: String,
    pub obj_code: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl Reference {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.obj_code, &self.id)
    }
}

/// A configuration object stored in an environment or carried in a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigObject {
    pub obj_code: String,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub fields: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ObjectKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Environment revision of the last write; 0 inside packages.
    #[serde(default)]
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<DateTime<Utc>>,
}

impl ConfigObject {
    /// An object with no fields, parent or references, not yet written anywhere.
    pub fn new(obj_code: impl Into<String>, id: impl Into<String>, name: impl Into<String>) -> Self {
        ConfigObject {
            obj_code: obj_code.into(),
            id: id.into(),
            name: name.into(),
            fields: Map::new(),
            parent: None,
            references: vec![],
            revision: 0,
            update_time: None,
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.obj_code, &self.id)
    }

    /// The object as a package carries it: no revision or write time, which belong to
    /// the environment it came from.
    pub fn content(&self) -> ConfigObject {
        ConfigObject { revision: 0, update_time: None, ..self.clone() }
    }
}

/// A reference a package does not carry, resolved in the destination at install time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExternalReference {
    pub obj_code: String,
    pub id: String,
    pub name: String,
}

/// One requested root of a package (the seed's `{ID, name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// The seed's `objectCollections` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCollection {
    pub obj_code: String,
    pub entities: Vec<EntityRef>,
}

/// Object ids are 32 lowercase hex characters, as in the seed's examples.
pub fn is_valid_object_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh object id: a random UUID without dashes.
pub fn new_object_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Type codes are 2..16 uppercase ASCII letters or digits.
pub fn is_valid_obj_code(code: &str) -> bool {
    (2..=16).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex() {
        assert!(is_valid_object_id("6419b8b9001151ee258921a4f7597bb2"));
        assert!(!is_valid_object_id("6419B8B9001151EE258921A4F7597BB2"));
        assert!(!is_valid_object_id("6419b8b9001151ee258921a4f7597bb"));
        assert!(!is_valid_object_id("6419b8b9-0011-51ee-2589-21a4f7597bb2"));
        assert!(is_valid_object_id(&new_object_id()));
    }

    #[test]
    fn obj_codes_are_short_uppercase() {
        assert!(is_valid_obj_code("TMPL"));
        assert!(is_valid_obj_code("UITMPL"));
        assert!(!is_valid_obj_code("tmpl"));
        assert!(!is_valid_obj_code("T"));
    }
}
