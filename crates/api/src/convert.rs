//! Conversions between domain types and their `promotion.v1` messages: JSON values,
//! timestamps and configuration objects.
use chrono::{DateTime, TimeZone, Utc};
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

use crate::v1 as pb;
use promotion_core::objects::{ConfigObject, EntityRef, ExternalReference, ObjectCollection, ObjectKey, Reference};
use promotion_core::plan::FieldChange;

/// Bytes a message takes as an item of a repeated field (what a list page spends on it).
pub fn item_len(m: &impl prost::Message) -> usize {
    promotion_core::wire::repeated_item_len(m.encoded_len())
}

pub fn json_to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() }),
        Json::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

pub fn map_to_struct(map: &Map<String, Json>) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

pub fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        // Integral numbers stay integers so that a round trip through JSON is exact.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Json::Number((*n as i64).into()),
        Some(Kind::NumberValue(n)) => Number::from_f64(*n).map_or(Json::Null, Json::Number),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_map(s)),
    }
}

/// For display only: a non-finite number (which JSON cannot hold) shows as null. What is
/// stored goes through [`try_struct_to_map`].
pub fn struct_to_map(s: &Struct) -> Map<String, Json> {
    s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect()
}

/// A field value protobuf can carry and JSON cannot: NaN or an infinity, at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonFinite {
    pub path: String,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is NaN or infinite; field values are finite numbers", self.path)
    }
}

/// `s` as field values, refusing non-finite numbers rather than storing them as null.
/// Recursion is bounded by the decoder, which nests no message more than 100 deep.
pub fn try_struct_to_map(s: &Struct, path: &str) -> Result<Map<String, Json>, NonFinite> {
    s.fields.iter().map(|(k, v)| Ok((k.clone(), try_value_to_json(v, &format!("{path}.{k}"))?))).collect()
}

fn try_value_to_json(value: &Value, path: &str) -> Result<Json, NonFinite> {
    Ok(match &value.kind {
        Some(Kind::NumberValue(n)) if !n.is_finite() => return Err(NonFinite { path: path.to_string() }),
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| try_value_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Json::Object(try_struct_to_map(s, path)?),
        _ => value_to_json(value),
    })
}

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(timestamp)
}

pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.seconds, t.nanos.clamp(0, 999_999_999) as u32).single()
}

impl From<&ObjectKey> for pb::ObjectKey {
    fn from(k: &ObjectKey) -> Self {
        pb::ObjectKey { obj_code: k.obj_code.clone(), id: k.id.clone() }
    }
}

impl From<pb::ObjectKey> for ObjectKey {
    fn from(k: pb::ObjectKey) -> Self {
        ObjectKey { obj_code: k.obj_code, id: k.id }
    }
}

impl From<&ConfigObject> for pb::ConfigObject {
    fn from(o: &ConfigObject) -> Self {
        pb::ConfigObject {
            obj_code: o.obj_code.clone(),
            id: o.id.clone(),
            name: o.name.clone(),
            fields: Some(map_to_struct(&o.fields)),
            parent: o.parent.as_ref().map(Into::into),
            references: o
                .references
                .iter()
                .map(|r| pb::Reference {
                    field: r.field.clone(),
                    obj_code: r.obj_code.clone(),
                    id: r.id.clone(),
                    optional: r.optional,
                })
                .collect(),
            revision: o.revision,
            update_time: opt_timestamp(o.update_time),
        }
    }
}

/// Shape-only conversion: catalog rules are checked by the domain, not here; only what
/// the domain's types cannot hold (a non-finite number) is refused.
impl TryFrom<pb::ConfigObject> for ConfigObject {
    type Error = NonFinite;

    fn try_from(o: pb::ConfigObject) -> Result<Self, NonFinite> {
        let fields = match &o.fields {
            Some(s) => try_struct_to_map(s, "fields")?,
            None => Map::new(),
        };
        Ok(ConfigObject {
            obj_code: o.obj_code,
            id: o.id,
            name: o.name,
            fields,
            parent: o.parent.filter(|p| !p.id.is_empty() || !p.obj_code.is_empty()).map(Into::into),
            references: o
                .references
                .into_iter()
                .map(|r| Reference { field: r.field, obj_code: r.obj_code, id: r.id, optional: r.optional })
                .collect(),
            revision: o.revision,
            update_time: o.update_time.as_ref().and_then(from_timestamp),
        })
    }
}

/// Objects of a message, refused at the first non-finite number with its position.
pub fn objects_from_proto(objects: Vec<pb::ConfigObject>, field: &str) -> Result<Vec<ConfigObject>, NonFinite> {
    objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| ConfigObject::try_from(o).map_err(|e| NonFinite { path: format!("{field}[{i}].{}", e.path) }))
        .collect()
}

impl From<&FieldChange> for pb::FieldChange {
    fn from(c: &FieldChange) -> Self {
        pb::FieldChange {
            path: c.path.clone(),
            before: Some(json_to_value(&c.before)),
            after: Some(json_to_value(&c.after)),
        }
    }
}

impl From<&ExternalReference> for pb::ExternalReference {
    fn from(r: &ExternalReference) -> Self {
        pb::ExternalReference { obj_code: r.obj_code.clone(), id: r.id.clone(), name: r.name.clone() }
    }
}

impl From<pb::ExternalReference> for ExternalReference {
    fn from(r: pb::ExternalReference) -> Self {
        ExternalReference { obj_code: r.obj_code, id: r.id, name: r.name }
    }
}

impl From<&ObjectCollection> for pb::ObjectCollection {
    fn from(c: &ObjectCollection) -> Self {
        pb::ObjectCollection {
            obj_code: c.obj_code.clone(),
            entities: c.entities.iter().map(|e| pb::EntityRef { id: e.id.clone(), name: e.name.clone() }).collect(),
        }
    }
}

impl From<pb::ObjectCollection> for ObjectCollection {
    fn from(c: pb::ObjectCollection) -> Self {
        ObjectCollection {
            obj_code: c.obj_code,
            entities: c.entities.into_iter().map(|e| EntityRef { id: e.id, name: e.name }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_struct() {
        let v = json!({"a": 1, "b": [true, null, "x", 2.5], "c": {"d": -3}});
        let map = v.as_object().unwrap();
        assert_eq!(&struct_to_map(&map_to_struct(map)), map);
    }

    #[test]
    fn objects_round_trip_through_proto() {
        let o = ConfigObject {
            obj_code: "TTSK".into(),
            id: "6419b8b9001151ee258921a4f7597bb2".into(),
            name: "Kick-off".into(),
            fields: json!({"duration": 2}).as_object().unwrap().clone(),
            parent: Some(ObjectKey::new("TMPL", "6419b8b9001151ee258921a4f7597bc3")),
            references: vec![Reference {
                field: "role".into(),
                obj_code: "ROLE".into(),
                id: "a".repeat(32),
                optional: true,
            }],
            revision: 7,
            update_time: Some(Utc.timestamp_opt(1_700_000_000, 5).unwrap()),
        };
        assert_eq!(ConfigObject::try_from(pb::ConfigObject::from(&o)).unwrap(), o);
    }

    #[test]
    fn non_finite_numbers_are_refused_not_nulled() {
        let nan = Value { kind: Some(Kind::NumberValue(f64::NAN)) };
        let list = Value { kind: Some(Kind::ListValue(ListValue { values: vec![nan] })) };
        let fields = Struct { fields: [("a".to_string(), list)].into_iter().collect() };
        let o = pb::ConfigObject { fields: Some(fields), ..Default::default() };
        let err = objects_from_proto(vec![o], "objects").unwrap_err();
        assert_eq!(err.path, "objects[0].fields.a[0]");
    }
}
