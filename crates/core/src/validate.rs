//! The one set of rules every configuration object obeys, whichever path brings it into a
//! store: PutObjects, a definition given to ReplacePackage, an installation (with its
//! alternative names and overrides), a rollback's restores, imports and development-mode
//! seeding all run [`object`] on each object and [`parent_cycle`] on each batch.
//!
//! The limits leave margin for every later wrapping of an object: the deepest message that
//! carries field values (a pre-run's field change inside its translation map) adds a dozen
//! protobuf levels to [`MAX_FIELD_DEPTH`] × 3, well under prost's limit of 100, and the
//! JSON the stores keep adds fewer than serde_json's limit of 128. So nothing accepted
//! here can fail to decode later.
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

use crate::catalog::Catalog;
use crate::objects::{is_valid_obj_code, is_valid_object_id, ConfigObject, ObjectKey};
use crate::wire;

/// Object names: 1..=255 characters, not blank, no control or bidirectional-override
/// characters (they rewrite terminals and listings), no NUL.
pub const MAX_NAME_CHARS: usize = 255;
/// Reference field names and field keys.
pub const MAX_FIELD_NAME_CHARS: usize = 128;
/// How deeply field values may nest (the fields map itself is level 1).
pub const MAX_FIELD_DEPTH: usize = 20;
/// The protobuf encoding of one object: a list page (1 MiB) always holds several.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;
/// References one object may hold.
pub const MAX_REFERENCES: usize = 1_000;
/// How long an ownership chain may be (groups nest); every walk up parents stops here.
pub const MAX_PARENT_DEPTH: usize = 32;
/// Requested roots of one package: a package message stays well inside a list page.
pub const MAX_PACKAGE_ROOTS: usize = 500;

/// Why an object (or a batch) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Malformed whatever the environment holds: INVALID_ARGUMENT with `reason`.
    Invalid { reason: &'static str, field: String, message: String },
    /// Over a documented limit: RESOURCE_EXHAUSTED `LIMIT_EXCEEDED` naming `limit`.
    TooLarge { limit: &'static str, max: usize, field: String, message: String },
}

impl Violation {
    pub fn invalid(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation::Invalid { reason, field: field.into(), message: message.into() }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Violation::Invalid { reason, .. } => reason,
            Violation::TooLarge { .. } => "LIMIT_EXCEEDED",
        }
    }

    pub fn field(&self) -> &str {
        match self {
            Violation::Invalid { field, .. } | Violation::TooLarge { field, .. } => field,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Violation::Invalid { message, .. } | Violation::TooLarge { message, .. } => message,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Characters no name may hold: C0/C1 controls (ESC starts terminal escapes) and the
/// bidirectional overrides and isolates that reorder what a listing shows.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// An object name: 1..=255 characters, not blank, printable.
pub fn name(name: &str, field: &str) -> Result<(), Violation> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(Violation::invalid(
            "INVALID_NAME",
            field,
            format!("names are 1..{MAX_NAME_CHARS} characters and not blank, not {chars}"),
        ));
    }
    if name.chars().any(is_forbidden_char) {
        return Err(Violation::invalid(
            "INVALID_NAME",
            field,
            "names must not contain control characters, escapes or bidirectional overrides",
        ));
    }
    Ok(())
}

/// An object id: 32 lowercase hex characters.
pub fn id(id: &str, field: &str) -> Result<(), Violation> {
    if is_valid_object_id(id) {
        Ok(())
    } else {
        Err(Violation::invalid("INVALID_ID", field, format!("id {:?} is not 32 lowercase hex characters", clip(id))))
    }
}

/// A type code the catalog knows.
pub fn obj_code(catalog: &Catalog, code: &str, field: &str) -> Result<(), Violation> {
    if catalog.get(code).is_some() {
        return Ok(());
    }
    let reason = if is_valid_obj_code(code) { "UNKNOWN_TYPE" } else { "INVALID_OBJ_CODE" };
    Err(Violation::invalid(reason, field, format!("type {:?} is not in catalog {}", clip(code), catalog.name)))
}

/// Everything one object must satisfy on its own: its type, id, name, parent,
/// references, field values (keys, strings, depth) and encoded size. `field` prefixes the
/// offending field's path (`objects[3]`).
pub fn object(catalog: &Catalog, o: &ConfigObject, field: &str) -> Result<(), Violation> {
    let at = |f: &str| format!("{field}.{f}");
    obj_code(catalog, &o.obj_code, &at("obj_code"))?;
    let t = catalog.get(&o.obj_code).expect("checked above");
    id(&o.id, &at("id"))?;
    name(&o.name, &at("name"))?;
    match &o.parent {
        None if !t.root && !t.parent_types.is_empty() => {
            return Err(Violation::invalid(
                "PARENT_REQUIRED",
                at("parent"),
                format!("{} objects are owned: name a parent of type {}", o.obj_code, t.parent_types.join(" or ")),
            ));
        }
        Some(p) if !t.parent_types.contains(&p.obj_code) => {
            return Err(Violation::invalid(
                "INVALID_PARENT",
                at("parent"),
                format!("a {} cannot be owned by a {:?}", o.obj_code, clip(&p.obj_code)),
            ));
        }
        Some(p) if !is_valid_object_id(&p.id) || p.id == o.id => {
            return Err(Violation::invalid(
                "INVALID_PARENT",
                at("parent.id"),
                format!("parent id {:?} is not valid", clip(&p.id)),
            ));
        }
        _ => {}
    }
    references(catalog, o, field)?;
    fields(&o.fields, &at("fields"))?;
    let bytes = wire::config_object_len(o);
    if bytes > MAX_OBJECT_BYTES {
        return Err(Violation::TooLarge {
            limit: "max_object_bytes",
            max: MAX_OBJECT_BYTES,
            field: field.to_string(),
            message: format!("object {} encodes to {bytes} bytes; objects are at most {MAX_OBJECT_BYTES}", o.key()),
        });
    }
    Ok(())
}

fn references(catalog: &Catalog, o: &ConfigObject, field: &str) -> Result<(), Violation> {
    if o.references.len() > MAX_REFERENCES {
        return Err(Violation::TooLarge {
            limit: "max_references",
            max: MAX_REFERENCES,
            field: format!("{field}.references"),
            message: format!("an object holds at most {MAX_REFERENCES} references, not {}", o.references.len()),
        });
    }
    let mut seen = BTreeSet::new();
    for (j, r) in o.references.iter().enumerate() {
        let at = |f: &str| format!("{field}.references[{j}].{f}");
        let chars = r.field.chars().count();
        if r.field.is_empty() || chars > MAX_FIELD_NAME_CHARS || r.field.chars().any(is_forbidden_char) {
            return Err(Violation::invalid(
                "INVALID_REFERENCE",
                at("field"),
                format!("reference field names are 1..{MAX_FIELD_NAME_CHARS} printable characters"),
            ));
        }
        obj_code(catalog, &r.obj_code, &at("obj_code"))?;
        id(&r.id, &at("id"))?;
        if !seen.insert((r.field.as_str(), r.id.as_str())) {
            return Err(Violation::invalid(
                "DUPLICATE_REFERENCE",
                at("field"),
                format!("reference {} -> {} appears twice", r.field, r.id),
            ));
        }
    }
    Ok(())
}

/// Field values: at most [`MAX_FIELD_DEPTH`] levels, keys of 1..=128 characters without
/// controls, and no NUL in any string (no store after this one could keep it faithfully).
pub fn fields(map: &Map<String, Value>, field: &str) -> Result<(), Violation> {
    // Iterative, so that no input can exhaust the stack.
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 1)).collect();
    let mut keys: Vec<&String> = map.keys().collect();
    while let Some((v, depth)) = stack.pop() {
        let nested = match v {
            Value::Array(items) => {
                stack.extend(items.iter().map(|i| (i, depth + 1)));
                true
            }
            Value::Object(m) => {
                keys.extend(m.keys());
                stack.extend(m.values().map(|i| (i, depth + 1)));
                true
            }
            Value::String(s) if s.contains('\0') => {
                return Err(Violation::invalid("INVALID_FIELD_VALUE", field, "field values must not contain NUL"));
            }
            _ => false,
        };
        if nested && depth + 1 > MAX_FIELD_DEPTH {
            return Err(too_deep(field));
        }
    }
    if let Some(k) = keys.iter().find(|k| {
        k.is_empty() || k.chars().count() > MAX_FIELD_NAME_CHARS || k.chars().any(|c| c == '\0' || c.is_control())
    }) {
        return Err(Violation::invalid(
            "INVALID_FIELD_NAME",
            field,
            format!("field names are 1..{MAX_FIELD_NAME_CHARS} printable characters, not {:?}", clip(k)),
        ));
    }
    Ok(())
}

pub fn too_deep(field: &str) -> Violation {
    Violation::invalid(
        "FIELD_TOO_DEEP",
        field,
        format!("field values nest at most {MAX_FIELD_DEPTH} levels (the fields map is level 1)"),
    )
}

/// The first object of `objects` whose ownership chain loops or is longer than
/// [`MAX_PARENT_DEPTH`], following parents inside `objects` and then through `outside`
/// (what the environment holds, as the parent of a key). Linear in the number of objects:
/// every chain is walked once, with a visited set.
pub fn parent_cycle<'a>(
    objects: impl IntoIterator<Item = &'a ConfigObject>,
    mut outside: impl FnMut(&ObjectKey) -> Option<Option<ObjectKey>>,
) -> Option<(ObjectKey, &'static str)> {
    let parents: HashMap<ObjectKey, Option<ObjectKey>> =
        objects.into_iter().map(|o| (o.key(), o.parent.clone())).collect();
    // Depth of every key whose chain is known to end, so no chain is walked twice.
    let mut settled: HashMap<ObjectKey, usize> = HashMap::new();
    let mut order: Vec<&ObjectKey> = parents.keys().collect();
    order.sort();
    for start in order {
        let mut chain: Vec<ObjectKey> = Vec::new();
        let mut on_chain: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut next = Some(start.clone());
        let base = loop {
            let Some(k) = next else { break 0 };
            if let Some(&d) = settled.get(&k) {
                break d + 1;
            }
            if !on_chain.insert(k.clone()) {
                return Some((start.clone(), "PARENT_CYCLE"));
            }
            if chain.len() > MAX_PARENT_DEPTH {
                return Some((start.clone(), "PARENT_TOO_DEEP"));
            }
            next = match parents.get(&k) {
                Some(p) => p.clone(),
                None => outside(&k).flatten(),
            };
            chain.push(k);
        };
        for (i, k) in chain.iter().rev().enumerate() {
            let depth = base + i;
            if depth > MAX_PARENT_DEPTH {
                return Some((start.clone(), "PARENT_TOO_DEEP"));
            }
            settled.insert(k.clone(), depth);
        }
    }
    None
}

/// A caller's string cut to a length an error message can quote.
pub fn clip(s: &str) -> String {
    clip_to(s, 80)
}

/// `s` cut to at most `max` characters (an ellipsis marks the cut).
pub fn clip_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::workfront;
    use crate::objects::Reference;
    use serde_json::json;

    fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
        ConfigObject::new(code, format!("{n:032x}"), name)
    }

    fn reason(r: Result<(), Violation>) -> &'static str {
        r.unwrap_err().reason()
    }

    fn nested(depth: usize) -> Map<String, Value> {
        let mut v = json!(1);
        for _ in 1..depth {
            v = json!({ "n": v });
        }
        json!({ "deep": v }).as_object().unwrap().clone()
    }

    #[test]
    fn names_are_printable_and_bounded() {
        let wf = workfront();
        assert!(object(&wf, &obj("GROUP", 1, "Ops"), "o").is_ok());
        for bad in ["", "  ", "a\0b", "tab\there", "\u{1b}[31mred", "rtl\u{202e}txt", &"n".repeat(256)] {
            assert_eq!(reason(object(&wf, &obj("GROUP", 1, bad), "o")), "INVALID_NAME", "{bad:?}");
        }
        assert!(object(&wf, &obj("GROUP", 1, &"é".repeat(255)), "o").is_ok());
    }

    #[test]
    fn fields_are_bounded_in_depth_keys_and_size() {
        let wf = workfront();
        let mut o = obj("GROUP", 1, "Ops");
        o.fields = nested(MAX_FIELD_DEPTH);
        assert!(object(&wf, &o, "o").is_ok());
        o.fields = nested(MAX_FIELD_DEPTH + 1);
        assert_eq!(reason(object(&wf, &o, "o")), "FIELD_TOO_DEEP");
        o.fields = json!({"a\u{7}": 1}).as_object().unwrap().clone();
        assert_eq!(reason(object(&wf, &o, "o")), "INVALID_FIELD_NAME");
        o.fields = json!({"a": ["x\0"]}).as_object().unwrap().clone();
        assert_eq!(reason(object(&wf, &o, "o")), "INVALID_FIELD_VALUE");
        o.fields = json!({"a": "x".repeat(MAX_OBJECT_BYTES)}).as_object().unwrap().clone();
        let err = object(&wf, &o, "o").unwrap_err();
        assert!(matches!(err, Violation::TooLarge { limit: "max_object_bytes", .. }), "{err:?}");
    }

    #[test]
    fn parents_and_references_are_well_formed() {
        let wf = workfront();
        assert_eq!(reason(object(&wf, &obj("TTSK", 1, "t"), "o")), "PARENT_REQUIRED");
        let mut own = obj("GROUP", 1, "g");
        own.parent = Some(own.key());
        assert_eq!(reason(object(&wf, &own, "o")), "INVALID_PARENT");
        let mut r = obj("TMPL", 2, "t");
        let reference =
            Reference { field: "g".into(), obj_code: "GROUP".into(), id: format!("{:032x}", 1), optional: false };
        r.references = vec![reference.clone(), reference];
        assert_eq!(reason(object(&wf, &r, "o")), "DUPLICATE_REFERENCE");
        r.references.truncate(1);
        r.references[0].field = "bad\nfield".into();
        assert_eq!(reason(object(&wf, &r, "o")), "INVALID_REFERENCE");
    }

    #[test]
    fn cycles_and_long_chains_are_found_in_linear_time() {
        let mut a = obj("GROUP", 1, "a");
        let mut b = obj("GROUP", 2, "b");
        a.parent = Some(b.key());
        b.parent = Some(a.key());
        assert_eq!(parent_cycle([&a, &b], |_| None).unwrap().1, "PARENT_CYCLE");
        // A cycle closing through the environment.
        let c = ConfigObject { parent: Some(obj("GROUP", 9, "x").key()), ..obj("GROUP", 3, "c") };
        let found = parent_cycle([&c], |k| (k.id == format!("{:032x}", 9)).then(|| Some(c.key())));
        assert_eq!(found.unwrap().1, "PARENT_CYCLE");
        // A chain of 100,000 groups: refused as too deep, quickly.
        let chain: Vec<ConfigObject> = (1..=100_000u32)
            .map(|n| ConfigObject { parent: (n > 1).then(|| obj("GROUP", n - 1, "p").key()), ..obj("GROUP", n, "g") })
            .collect();
        assert_eq!(parent_cycle(&chain, |_| None).unwrap().1, "PARENT_TOO_DEEP");
        assert_eq!(parent_cycle(&chain[..MAX_PARENT_DEPTH], |_| None), None);
    }
}
