//! Field-level differences between two versions of an object: name, fields (numbers
//! compared by value), references per field and parent. What a pre-run shows of a matched
//! object, what a drift report shows of a local edit, and what changed between two
//! versions of a package.
use serde_json::Value;
use std::collections::HashMap;

use crate::objects::{ConfigObject, Reference};
use crate::plan::FieldChange;

fn sorted_refs(refs: &[Reference]) -> Vec<(&str, &str)> {
    let mut v: Vec<(&str, &str)> = refs.iter().map(|r| (r.field.as_str(), r.id.as_str())).collect();
    v.sort();
    v
}

/// JSON equality with numbers compared by value. Objects reach a store either as JSON
/// (seeds, files: `145.0`) or through `google.protobuf.Struct`, whose numbers come back as
/// integers when integral (`145`); both are the same field value and must not show as a change.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// Field-level differences between `target` (before) and `source` (after), with the
/// references and parent of `source` translated through `targets` (source id ->
/// destination id; ids it does not hold are compared as they are).
pub fn diff(target: &ConfigObject, source: &ConfigObject, targets: &HashMap<String, String>) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    if target.name != source.name {
        changes.push(FieldChange {
            path: "name".into(),
            before: target.name.clone().into(),
            after: source.name.clone().into(),
        });
    }
    let keys: std::collections::BTreeSet<&String> = target.fields.keys().chain(source.fields.keys()).collect();
    for k in keys {
        let before = target.fields.get(k).cloned().unwrap_or(Value::Null);
        let after = source.fields.get(k).cloned().unwrap_or(Value::Null);
        if !same_value(&before, &after) {
            changes.push(FieldChange { path: format!("fields.{k}"), before, after });
        }
    }
    let translate_id = |id: &str| targets.get(id).cloned().unwrap_or_else(|| id.to_string());
    let translated: Vec<Reference> =
        source.references.iter().map(|r| Reference { id: translate_id(&r.id), ..r.clone() }).collect();
    let before_refs = sorted_refs(&target.references);
    let after_refs = sorted_refs(&translated);
    if before_refs != after_refs {
        let fields: std::collections::BTreeSet<&str> = before_refs.iter().chain(&after_refs).map(|(f, _)| *f).collect();
        for f in fields {
            let ids = |refs: &[(&str, &str)]| -> Value {
                let ids: Vec<Value> = refs.iter().filter(|(x, _)| *x == f).map(|(_, id)| Value::from(*id)).collect();
                match ids.len() {
                    0 => Value::Null,
                    1 => ids[0].clone(),
                    _ => Value::Array(ids),
                }
            };
            let (before, after) = (ids(&before_refs), ids(&after_refs));
            if before != after {
                changes.push(FieldChange { path: format!("references.{f}"), before, after });
            }
        }
    }
    let parent_after = source.parent.as_ref().map(|p| translate_id(&p.id));
    let parent_before = target.parent.as_ref().map(|p| p.id.clone());
    if parent_before != parent_after {
        changes.push(FieldChange { path: "parent".into(), before: parent_before.into(), after: parent_after.into() });
    }
    changes
}
