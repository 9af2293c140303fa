//! JSON in seed 001's shape to and from the `promotion.v1` messages, driven by the
//! descriptor set, so every field of every RPC is covered and none is hand-copied: the
//! seed's names (`packageName`, `ID`, `createdAt`, `customerId`...), status names without
//! their enum prefix (`EXTRACTING` for `PACKAGE_STATUS_EXTRACTING`), a translation map as
//! `objCode -> source id -> entry`, and unset timestamps as `null`.
use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(promotion_api::FILE_DESCRIPTOR_SET).expect("the build embeds a valid descriptor set")
});

/// Seed 001's names for fields of ours: (seed, ours). Answers use the seed's; requests may
/// use either.
const SEED_NAMES: &[(&str, &str)] = &[
    ("createdAt", "createTime"),
    ("updatedAt", "updateTime"),
    ("publishedAt", "publishTime"),
    ("retiredAt", "retireTime"),
    ("finishedAt", "finishTime"),
    ("expiresAt", "expireTime"),
    ("createdById", "createdBy"),
    ("customerId", "organization"),
];

/// Further names the seed's request bodies use: (seed, ours).
const SEED_ALIASES: &[(&str, &str)] = &[
    ("packageName", "name"),
    ("ID", "id"),
    ("source", "sourceEnvironment"),
    ("destination", "destinationEnvironment"),
    ("target", "targetEnvironment"),
];

/// The message whose only field is the entries of one object type's translation map.
const TYPE_TRANSLATION: &str = "promotion.v1.TypeTranslation";

/// One RPC: its gRPC path and message types.
#[derive(Clone)]
pub struct Rpc {
    pub path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

/// `service` (`PackageService`) and `method` (`CreatePackage`) of `promotion.v1`.
pub fn rpc(service: &str, method: &str) -> Rpc {
    let full = format!("promotion.v1.{service}");
    let descriptor = POOL.get_service_by_name(&full).unwrap_or_else(|| panic!("no service {full}"));
    let method = descriptor.methods().find(|m| m.name() == method).unwrap_or_else(|| panic!("no {full}/{method}"));
    Rpc { path: format!("/{full}/{}", method.name()), input: method.input(), output: method.output() }
}

/// A request body that is not the message it should be.
#[derive(Debug)]
pub struct Malformed(pub String);

/// Encodes `json` (seed or proto JSON names) as a `message`.
pub fn encode(json: Value, message: &MessageDescriptor) -> Result<Vec<u8>, Malformed> {
    let json = to_proto_json(json, message);
    let dynamic = DynamicMessage::deserialize(message.clone(), json).map_err(|e| Malformed(e.to_string()))?;
    Ok(dynamic.encode_to_vec())
}

/// Decodes a `message` into seed-shaped JSON.
pub fn decode(bytes: &[u8], message: &MessageDescriptor) -> Result<Value, String> {
    let dynamic = DynamicMessage::decode(message.clone(), bytes).map_err(|e| e.to_string())?;
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(false);
    let json = dynamic.serialize_with_options(serde_json::value::Serializer, &options).map_err(|e| e.to_string())?;
    Ok(to_seed_json(json, message))
}

/// The field of `message` a request's `key` names: ours (JSON or proto name), or the seed's.
pub fn field_for(message: &MessageDescriptor, key: &str) -> Option<FieldDescriptor> {
    let ours = SEED_NAMES.iter().chain(SEED_ALIASES).find(|(seed, _)| *seed == key).map(|(_, ours)| *ours);
    message
        .get_field_by_json_name(key)
        .or_else(|| message.get_field_by_name(key))
        .or_else(|| ours.and_then(|o| message.get_field_by_json_name(o)))
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.")
}

/// The one repeated field of a wrapper message (`ObjectCollections`), which a request may
/// give as the bare array.
fn only_list(message: &MessageDescriptor) -> Option<FieldDescriptor> {
    let mut fields = message.fields();
    let first = fields.next()?;
    (fields.next().is_none() && first.is_list()).then_some(first)
}

fn to_proto_json(value: Value, message: &MessageDescriptor) -> Value {
    if is_well_known(message) {
        return value;
    }
    match value {
        Value::Array(items) => match only_list(message) {
            Some(list) => to_proto_json(
                Value::Object(Map::from_iter([(list.json_name().to_string(), Value::Array(items))])),
                message,
            ),
            None => Value::Array(items),
        },
        Value::Object(map) if message.full_name() == TYPE_TRANSLATION && !map.contains_key("entries") => {
            to_proto_json(Value::Object(Map::from_iter([("entries".to_string(), Value::Object(map))])), message)
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| match field_for(message, &key) {
                    Some(field) => (field.json_name().to_string(), field_value(value, &field, Direction::In)),
                    // prost-reflect names the unknown field in its error.
                    None => (key, value),
                })
                .collect(),
        ),
        other => other,
    }
}

fn to_seed_json(value: Value, message: &MessageDescriptor) -> Value {
    if is_well_known(message) {
        return value;
    }
    let Value::Object(mut map) = value else { return value };
    if message.full_name() == TYPE_TRANSLATION {
        let entries = map.remove("entries").unwrap_or(Value::Object(Map::new()));
        let field = message.get_field_by_name("entries").expect("TypeTranslation has entries");
        return field_value(entries, &field, Direction::Out);
    }
    let mut out = Map::new();
    for field in message.fields() {
        let name = seed_name(field.json_name());
        match map.remove(field.json_name()) {
            Some(value) => {
                out.insert(name.to_string(), field_value(value, &field, Direction::Out));
            }
            // The seed shows an unset time as null (`"publishedAt": null`).
            None if is_singular_message(&field) => {
                out.insert(name.to_string(), Value::Null);
            }
            None => {}
        }
    }
    Value::Object(out)
}

fn is_singular_message(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(_))
        && !field.is_list()
        && !field.is_map()
        && field.containing_oneof().is_none()
}

fn seed_name(ours: &str) -> &str {
    SEED_NAMES.iter().find(|(_, o)| *o == ours).map(|(seed, _)| *seed).unwrap_or(ours)
}

#[derive(Clone, Copy)]
enum Direction {
    In,
    Out,
}

fn field_value(value: Value, field: &FieldDescriptor, direction: Direction) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { return value };
        let kind = entry.map_entry_value_field().kind();
        return match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, kind_value(v, &kind, direction))).collect())
            }
            other => other,
        };
    }
    match value {
        Value::Array(items) if field.is_list() => {
            Value::Array(items.into_iter().map(|v| kind_value(v, &field.kind(), direction)).collect())
        }
        other => kind_value(other, &field.kind(), direction),
    }
}

fn kind_value(value: Value, kind: &Kind, direction: Direction) -> Value {
    match (kind, direction) {
        (Kind::Message(m), Direction::In) => to_proto_json(value, m),
        (Kind::Message(m), Direction::Out) => to_seed_json(value, m),
        (Kind::Enum(e), Direction::In) => enum_in(value, e),
        (Kind::Enum(e), Direction::Out) => enum_out(value, e),
        _ => value,
    }
}

/// `PACKAGE_STATUS_` for PackageStatus: its zero value's name without `UNSPECIFIED`.
fn enum_prefix(e: &EnumDescriptor) -> String {
    e.get_value(0).and_then(|v| v.name().strip_suffix("UNSPECIFIED").map(str::to_owned)).unwrap_or_default()
}

fn enum_in(value: Value, e: &EnumDescriptor) -> Value {
    match value {
        Value::String(name) if e.get_value_by_name(&name).is_none() => {
            let full = format!("{}{}", enum_prefix(e), name.to_ascii_uppercase());
            Value::String(if e.get_value_by_name(&full).is_some() { full } else { name })
        }
        other => other,
    }
}

fn enum_out(value: Value, e: &EnumDescriptor) -> Value {
    match value {
        Value::String(name) => {
            let prefix = enum_prefix(e);
            Value::String(name.strip_prefix(prefix.as_str()).filter(|s| !s.is_empty()).unwrap_or(&name).to_string())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seeds_create_body_becomes_a_create_package_request() {
        let create = rpc("PackageService", "CreatePackage");
        let body = json!({
            "packageName": "Agency Onboarding - 2023-06-06",
            "source": "dev",
            "objectCollections": [{"objCode": "TMPL", "entities": [{"ID": "6419b8b9001151ee258921a4f7597bb2", "name": "x"}]}]
        });
        let bytes = encode(body, &create.input).unwrap();
        let request = promotion_api::v1::CreatePackageRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.name, "Agency Onboarding - 2023-06-06");
        assert_eq!(request.source_environment, "dev");
        assert_eq!(request.object_collections[0].entities[0].id, "6419b8b9001151ee258921a4f7597bb2");
        let unknown = encode(json!({"nonsense": 1}), &create.input).unwrap_err();
        assert!(unknown.0.contains("nonsense"), "{unknown:?}");
    }

    #[test]
    fn packages_answer_in_the_seeds_names_and_status_names() {
        let package = promotion_api::v1::Package {
            id: "p".into(),
            status: promotion_api::v1::PackageStatus::Extracting as i32,
            version: 1,
            organization: "acme".into(),
            created_by: "alice".into(),
            create_time: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
            ..Default::default()
        };
        let json = decode(&package.encode_to_vec(), &rpc("PackageService", "GetPackage").output).unwrap();
        assert_eq!(json["status"], "EXTRACTING");
        assert_eq!(json["version"], 1);
        assert_eq!(json["customerId"], "acme");
        assert_eq!(json["createdById"], "alice");
        assert_eq!(json["createdAt"], "1970-01-01T00:00:01Z");
        assert_eq!(json["publishedAt"], Value::Null);
        assert_eq!(json["installationCounts"], json!({}));
        assert_eq!(json["isPrivate"], false);
    }

    #[test]
    fn translation_maps_take_and_give_the_seeds_shape() {
        let install = rpc("InstallationService", "CreateInstallation");
        let body = json!({"packageId": "p", "translationMap": {"GROUP": {"g1": {"action": "CREATEWITHALTNAME", "altName": "G (dev)"}}}});
        let bytes = encode(body, &install.input).unwrap();
        let request = promotion_api::v1::CreateInstallationRequest::decode(bytes.as_slice()).unwrap();
        let entry = &request.translation_map["GROUP"].entries["g1"];
        assert_eq!(entry.action, promotion_api::v1::InstallAction::Createwithaltname as i32);
        assert_eq!(entry.alt_name, "G (dev)");
        let installation =
            promotion_api::v1::Installation { translation_map: request.translation_map, ..Default::default() };
        let json = decode(&installation.encode_to_vec(), &install.output).unwrap();
        assert_eq!(json["translationMap"]["GROUP"]["g1"]["action"], "CREATEWITHALTNAME", "{json}");
    }
}
