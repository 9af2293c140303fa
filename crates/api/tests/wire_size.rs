//! The domain's own count of an object's encoded size (`promotion_core::wire`) is exact:
//! it agrees with prost's encoding of the message for arbitrary objects.
use chrono::TimeZone;
use proptest::prelude::*;
use prost::Message;
use serde_json::{Map, Value};

use promotion_api::v1 as pb;
use promotion_core::objects::{ConfigObject, ExternalReference, ObjectKey, Reference};
use promotion_core::wire;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = ConfigObject> {
    (
        "[A-Z]{0,6}",
        "[0-9a-f]{0,32}",
        ".{0,300}",
        proptest::collection::btree_map("[a-z_]{1,10}", json(), 0..8),
        proptest::option::of(("[A-Z]{2,6}", "[0-9a-f]{32}")),
        proptest::collection::vec(("[a-z]{0,10}", "[A-Z]{0,6}", "[0-9a-f]{0,32}", any::<bool>()), 0..4),
        any::<u64>(),
        proptest::option::of((-10_000_000_000i64..10_000_000_000, 0u32..1_000_000_000)),
    )
        .prop_map(|(code, id, name, fields, parent, refs, revision, time)| ConfigObject {
            obj_code: code,
            id,
            name,
            fields: fields.into_iter().collect::<Map<String, Value>>(),
            parent: parent.map(|(c, i)| ObjectKey::new(c, i)),
            references: refs
                .into_iter()
                .map(|(field, obj_code, id, optional)| Reference { field, obj_code, id, optional })
                .collect(),
            revision,
            update_time: time.and_then(|(s, n)| chrono::Utc.timestamp_opt(s, n).single()),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn config_object_sizes_match_the_encoding(o in object()) {
        prop_assert_eq!(wire::config_object_len(&o), pb::ConfigObject::from(&o).encoded_len());
    }

    #[test]
    fn external_reference_sizes_match_the_encoding(code in ".{0,10}", id in ".{0,40}", name in ".{0,300}") {
        let r = ExternalReference { obj_code: code, id, name };
        prop_assert_eq!(wire::external_reference_len(&r), pb::ExternalReference::from(&r).encoded_len());
    }
}
