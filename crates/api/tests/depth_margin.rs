//! Nothing the object rules accept can fail to decode later: an object whose fields nest
//! the documented maximum decodes inside every message that carries field values, the
//! deepest being a pre-run's field change; and a message nested past what prost decodes is
//! INVALID_ARGUMENT FIELD_TOO_DEEP, not INTERNAL.
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use promotion_api::convert::{json_to_value, map_to_struct};
use promotion_api::status::reason_of;
use promotion_api::v1 as pb;
use promotion_core::catalog::workfront;
use promotion_core::objects::ConfigObject;
use promotion_core::validate::{self, MAX_FIELD_DEPTH};

/// Fields nesting `depth` levels of objects (the costliest shape to decode).
fn nested(depth: usize) -> Map<String, Value> {
    let mut v = json!(1);
    for _ in 1..depth {
        v = json!({ "n": v });
    }
    json!({ "deep": v }).as_object().unwrap().clone()
}

fn object(depth: usize) -> ConfigObject {
    ConfigObject {
        obj_code: "GROUP".into(),
        id: "6419b8b9001151ee258921a4f7597bb2".into(),
        name: "Deep".into(),
        fields: nested(depth),
        parent: None,
        references: vec![],
        revision: 0,
        update_time: None,
    }
}

fn round_trips<M: Message + Default>(m: &M) -> Result<(), prost::DecodeError> {
    M::decode(m.encode_to_vec().as_slice()).map(|_| ())
}

#[test]
fn the_deepest_accepted_object_decodes_in_every_wrapping() {
    let o = object(MAX_FIELD_DEPTH);
    validate::object(&workfront(), &o, "o").expect("the documented maximum is accepted");
    let proto = pb::ConfigObject::from(&o);
    round_trips(&pb::PutObjectsRequest { objects: vec![proto.clone()], ..Default::default() }).unwrap();
    round_trips(&pb::ListObjectsResponse { objects: vec![proto.clone()], ..Default::default() }).unwrap();
    let entities = pb::PackageEntities { objects: vec![proto.clone()], ..Default::default() };
    let definition = pb::GetPackageDefinitionResponse {
        part: Some(pb::get_package_definition_response::Part::Entities(entities.clone())),
    };
    round_trips(&definition).unwrap();
    let replace = pb::ReplacePackageRequest {
        definition: Some(pb::replace_package_request::Definition::Entities(entities)),
        ..Default::default()
    };
    round_trips(&replace).unwrap();
    // A field change carries a field's value: one level below the fields map.
    let deepest = json_to_value(&o.fields["deep"]);
    let change = pb::FieldChange { path: "fields.deep".into(), before: Some(deepest.clone()), after: Some(deepest) };
    let entry = pb::TranslationEntry { changes: vec![change], ..Default::default() };
    let types = pb::TypeTranslation { entries: HashMap::from([(o.id.clone(), entry)]) };
    let pre_run = pb::PreRun { translation_map: HashMap::from([("GROUP".to_string(), types)]), ..Default::default() };
    round_trips(&pre_run).unwrap();
    round_trips(&pb::Installation { translation_map: pre_run.translation_map.clone(), ..Default::default() }).unwrap();
    // And the stores' JSON (serde_json stops at 128 levels).
    let stored = serde_json::to_vec(&vec![Some(o)]).unwrap();
    serde_json::from_slice::<Vec<Option<ConfigObject>>>(&stored).unwrap();
}

#[test]
fn a_message_too_deep_to_decode_is_field_too_deep() {
    let o = object(MAX_FIELD_DEPTH * 3);
    let req = pb::PutObjectsRequest {
        objects: vec![pb::ConfigObject { fields: Some(map_to_struct(&o.fields)), ..Default::default() }],
        ..Default::default()
    };
    let err = pb::PutObjectsRequest::decode(req.encode_to_vec().as_slice()).unwrap_err();
    let status = promotion_api::codec::decode_failure(&err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason_of(&status).as_deref(), Some("FIELD_TOO_DEEP"));
}
