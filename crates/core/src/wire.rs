//! The exact size of an object's protobuf encoding (`promotion.v1.ConfigObject`), so that
//! the domain can bound stream messages without holding encoded bytes. The api crate's
//! tests check it against prost for arbitrary objects.
use serde_json::Value;

use crate::objects::{ConfigObject, ExternalReference};

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field: tag, length, payload.
fn delimited(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A string field, skipped when empty (proto3).
fn string(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited(s.len())
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Null => 2,
        Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => delimited(s.len()),
        Value::Array(items) => delimited(items.iter().map(|i| delimited(value_len(i))).sum()),
        Value::Object(map) => delimited(struct_len(map)),
    }
}

/// The encoded length of a `google.protobuf.Struct` body.
fn struct_len(map: &serde_json::Map<String, Value>) -> usize {
    map.iter().map(|(k, v)| delimited(string(k) + delimited(value_len(v)))).sum()
}

fn signed_varint_field(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v as u64)
    }
}

/// Bytes `o` takes as a `ConfigObject` message.
pub fn config_object_len(o: &ConfigObject) -> usize {
    let mut n = string(&o.obj_code) + string(&o.id) + string(&o.name);
    n += delimited(struct_len(&o.fields));
    if let Some(p) = &o.parent {
        n += delimited(string(&p.obj_code) + string(&p.id));
    }
    for r in &o.references {
        n += delimited(string(&r.field) + string(&r.obj_code) + string(&r.id) + if r.optional { 2 } else { 0 });
    }
    if o.revision != 0 {
        n += 1 + varint_len(o.revision);
    }
    if let Some(t) = o.update_time {
        n += delimited(signed_varint_field(t.timestamp()) + signed_varint_field(t.timestamp_subsec_nanos() as i64));
    }
    n
}

/// Bytes `r` takes as an `ExternalReference` message.
pub fn external_reference_len(r: &ExternalReference) -> usize {
    string(&r.obj_code) + string(&r.id) + string(&r.name)
}

/// Bytes an item takes inside a repeated field of its enclosing message.
pub fn repeated_item_len(len: usize) -> usize {
    delimited(len)
}

/// The deepest nesting of arrays and objects in `v` (a scalar is depth 0).
pub fn depth(v: &Value) -> usize {
    // Iterative, so that no input can exhaust the stack.
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}
