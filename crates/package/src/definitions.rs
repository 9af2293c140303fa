//! Package definitions: canonical order, content digest, counts and metadata, the
//! validation of a definition given whole, and the split into bounded stream messages.
//!
//! Messages are bounded by the exact size of their protobuf encoding
//! (`promotion_core::wire`), so that no definition message exceeds 1 MiB whatever the
//! package size; the digest is over a canonical JSON encoding of each item.
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

use promotion_core::catalog::Catalog;
use promotion_core::objects::{is_valid_obj_code, is_valid_object_id, ConfigObject, ExternalReference};
use promotion_core::package::{DefinitionChunk, DefinitionHeader, Metadata};
use promotion_core::validate::{self, Violation};
use promotion_core::wire;

/// No message of a definition stream may exceed this, whatever the package size.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Bytes a `GetPackageDefinitionResponse { entities: PackageEntities { .. } }` adds around
/// its items: two tags and two length varints of at most 5 bytes each.
pub const ENVELOPE_BYTES: usize = 12;

/// What a definition carries, as extracted or as given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Content {
    pub objects: Vec<ConfigObject>,
    pub external_references: Vec<ExternalReference>,
}

/// A definition ready to store: everything but the header's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub digest: String,
    pub entity_counts: BTreeMap<String, i64>,
    pub entity_total: i64,
    pub metadata: Metadata,
    /// Entity messages in stream order, each at most [`MAX_MESSAGE_BYTES`] encoded.
    pub chunks: Vec<DefinitionChunk>,
}

impl Built {
    pub fn header(&self, package_id: &str, version: i64, organization: &str, source: &str) -> DefinitionHeader {
        DefinitionHeader {
            package_id: package_id.into(),
            version,
            digest: self.digest.clone(),
            metadata: self.metadata.clone(),
            entity_counts: self.entity_counts.clone(),
            source_environment: source.into(),
            organization: organization.into(),
            entity_total: self.entity_total,
        }
    }
}

/// Canonical order (install rank, then type, then id), one copy of each object and
/// external reference, digest, counts, metadata and chunks of at most `budget` bytes of
/// items. `root_types` are the requested root types in request order (display order).
/// Consumes `content` as it goes so the definition is not held twice.
pub fn build(catalog: &Catalog, root_types: &[String], content: Content, budget: usize) -> Result<Built, String> {
    build_bounded(catalog, root_types, content, budget, usize::MAX)
}

/// [`build`], refusing a definition whose items encode to more than `max_bytes` in all or
/// that holds an object the rules of [`validate::object`] refuse (an environment may hold
/// objects written before a rule existed; no package carries them on).
pub fn build_bounded(
    catalog: &Catalog,
    root_types: &[String],
    content: Content,
    budget: usize,
    max_bytes: usize,
) -> Result<Built, String> {
    let Content { mut objects, mut external_references } = content;
    let rank = |code: &str| catalog.get(code).map_or(i32::MAX, |t| t.install_rank);
    for o in &mut objects {
        o.revision = 0;
        o.update_time = None;
    }
    objects.sort_by(|a, b| (rank(&a.obj_code), &a.obj_code, &a.id).cmp(&(rank(&b.obj_code), &b.obj_code, &b.id)));
    objects.dedup_by(|a, b| a.obj_code == b.obj_code && a.id == b.id);
    let included: HashSet<(&str, &str)> = objects.iter().map(|o| (o.obj_code.as_str(), o.id.as_str())).collect();
    external_references.retain(|r| !included.contains(&(r.obj_code.as_str(), r.id.as_str())));
    drop(included);
    external_references.sort_by(|a, b| (&a.obj_code, &a.id).cmp(&(&b.obj_code, &b.id)));
    external_references.dedup_by(|a, b| a.obj_code == b.obj_code && a.id == b.id);

    let mut entity_counts: BTreeMap<String, i64> = BTreeMap::new();
    for o in &objects {
        *entity_counts.entry(o.obj_code.clone()).or_default() += 1;
    }
    let metadata = metadata(catalog, root_types, &entity_counts);
    let entity_total = objects.len() as i64;

    let mut hasher = Sha256::new();
    hasher.update(b"promotion.v1 package definition\n");
    let mut chunker = Chunker::new(budget);
    let mut total = 0usize;
    for o in objects {
        validate::object(catalog, &o, "objects").map_err(|v| format!("{} {}: {v}", o.obj_code, o.id))?;
        hash_item(&mut hasher, &serde_json::to_vec(&o).expect("objects serialise"));
        let len = wire::config_object_len(&o);
        total += len;
        if total > max_bytes {
            return Err(format!("the definition encodes to more than max_definition_bytes ({max_bytes})"));
        }
        chunker.push(Item::Object(o), len)?;
    }
    hasher.update(b"external references\n");
    for r in external_references {
        hash_item(&mut hasher, &serde_json::to_vec(&r).expect("references serialise"));
        let len = wire::external_reference_len(&r);
        chunker.push(Item::External(r), len)?;
    }
    Ok(Built {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        entity_counts,
        entity_total,
        metadata,
        chunks: chunker.finish(),
    })
}

fn hash_item(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// Install order from the catalog; display order: requested root types first, then the
/// rest in install order.
fn metadata(catalog: &Catalog, root_types: &[String], counts: &BTreeMap<String, i64>) -> Metadata {
    let install_order = catalog.install_order(counts.keys().map(String::as_str));
    let mut display_order: Vec<String> = Vec::new();
    for code in root_types.iter().chain(&install_order) {
        if counts.contains_key(code) && !display_order.contains(code) {
            display_order.push(code.clone());
        }
    }
    Metadata { install_order, display_order }
}

enum Item {
    Object(ConfigObject),
    External(ExternalReference),
}

/// Packs items into entity messages of at most `budget` bytes of items each.
struct Chunker {
    budget: usize,
    size: usize,
    current: DefinitionChunk,
    done: Vec<DefinitionChunk>,
}

impl Chunker {
    fn new(budget: usize) -> Self {
        // A budget above the message bound could never be honoured.
        let budget = budget.clamp(1, MAX_MESSAGE_BYTES - ENVELOPE_BYTES);
        Chunker { budget, size: 0, current: DefinitionChunk::default(), done: Vec::new() }
    }

    fn push(&mut self, item: Item, encoded_len: usize) -> Result<(), String> {
        let len = wire::repeated_item_len(encoded_len);
        if len + ENVELOPE_BYTES > MAX_MESSAGE_BYTES {
            let what = match &item {
                Item::Object(o) => format!("object {} {}", o.obj_code, o.id),
                Item::External(r) => format!("external reference {} {}", r.obj_code, r.id),
            };
            return Err(format!(
                "{what} encodes to {encoded_len} bytes, more than a {MAX_MESSAGE_BYTES}-byte definition message can carry"
            ));
        }
        if self.size > 0 && self.size + len > self.budget {
            self.flush();
        }
        self.size += len;
        match item {
            Item::Object(o) => self.current.objects.push(o),
            Item::External(r) => self.current.external_references.push(r),
        }
        Ok(())
    }

    fn flush(&mut self) {
        self.done.push(std::mem::take(&mut self.current));
        self.size = 0;
    }

    fn finish(mut self) -> Vec<DefinitionChunk> {
        if self.size > 0 {
            self.flush();
        }
        self.done
    }
}

/// Why a definition given whole is not acceptable: reason, offending field, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

fn reject(reason: &'static str, field: String, message: String) -> Rejection {
    Rejection { reason, field, message }
}

/// Checks a definition given whole (ReplacePackage `entities`) against the source
/// environment's catalog: types known and carried, ids well formed and unique, names
/// present, parents allowed, and every parent and reference either included or listed
/// as an external reference.
pub fn validate(catalog: &Catalog, content: &Content) -> Result<(), Rejection> {
    let mut included: HashMap<&str, &str> = HashMap::new();
    for (i, o) in content.objects.iter().enumerate() {
        let field = |f: &str| format!("entities.objects[{i}].{f}");
        check_type(catalog, &o.obj_code, field("obj_code"))?;
        validate::object(catalog, o, &format!("entities.objects[{i}]")).map_err(Rejection::from)?;
        if included.insert(&o.id, &o.obj_code).is_some() {
            return Err(reject("DUPLICATE_OBJECT", field("id"), format!("object {} appears twice", o.id)));
        }
    }
    let mut external: HashMap<&str, &str> = HashMap::new();
    for (i, r) in content.external_references.iter().enumerate() {
        let field = |f: &str| format!("entities.external_references[{i}].{f}");
        check_type(catalog, &r.obj_code, field("obj_code"))?;
        check_id(&r.id, field("id"))?;
        if !r.name.is_empty() {
            validate::name(&r.name, &field("name")).map_err(Rejection::from)?;
        }
        external.insert(&r.id, &r.obj_code);
    }
    let resolves = |code: &str, id: &str| included.get(id).or_else(|| external.get(id)).is_some_and(|c| *c == code);
    for (i, o) in content.objects.iter().enumerate() {
        if let Some(p) = o.parent.as_ref().filter(|p| !resolves(&p.obj_code, &p.id)) {
            return Err(unresolved(format!("entities.objects[{i}].parent"), o, &p.obj_code, &p.id));
        }
        for (j, r) in o.references.iter().enumerate() {
            if !resolves(&r.obj_code, &r.id) {
                return Err(unresolved(format!("entities.objects[{i}].references[{j}].id"), o, &r.obj_code, &r.id));
            }
        }
    }
    // Parents outside the package are external references: their chains end there.
    if let Some((key, reason)) = validate::parent_cycle(&content.objects, |_| None) {
        return Err(reject(
            reason,
            "entities.objects".into(),
            format!("{key} owns itself or is owned more than {} levels deep", validate::MAX_PARENT_DEPTH),
        ));
    }
    Ok(())
}

impl From<Violation> for Rejection {
    fn from(v: Violation) -> Self {
        match v {
            Violation::Invalid { reason, field, message } => Rejection { reason, field, message },
            // A definition given whole travels in one request: an oversized object in it is
            // as malformed as any other field.
            Violation::TooLarge { field, message, .. } => Rejection { reason: "OBJECT_TOO_LARGE", field, message },
        }
    }
}

fn unresolved(field: String, o: &ConfigObject, code: &str, id: &str) -> Rejection {
    reject(
        "UNRESOLVED_REFERENCE",
        field,
        format!("{} {} points at {code} {id}, which is neither included nor an external reference", o.obj_code, o.id),
    )
}

fn check_type(catalog: &Catalog, code: &str, field: String) -> Result<(), Rejection> {
    match catalog.get(code) {
        None => {
            let reason = if is_valid_obj_code(code) { "UNKNOWN_TYPE" } else { "INVALID_OBJ_CODE" };
            Err(reject(reason, field, format!("type {code:?} is not in catalog {}", catalog.name)))
        }
        Some(t) if t.never_carried => Err(reject(
            "TYPE_NOT_CARRIED",
            field,
            format!("{code} objects never leave their environment (catalog {})", catalog.name),
        )),
        Some(_) => Ok(()),
    }
}

fn check_id(id: &str, field: String) -> Result<(), Rejection> {
    if is_valid_object_id(id) {
        Ok(())
    } else {
        Err(reject("INVALID_ID", field, format!("id {id:?} is not 32 lowercase hex characters")))
    }
}

/// Strips what the catalog says is never carried from a definition given whole.
pub fn strip_excluded_fields(catalog: &Catalog, content: &mut Content) {
    for o in &mut content.objects {
        if let Some(t) = catalog.get(&o.obj_code) {
            for f in &t.excluded_fields {
                o.fields.remove(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promotion_core::catalog::{apim, workfront};
    use promotion_core::objects::{ObjectKey, Reference};
    use serde_json::{json, Value};

    fn obj(code: &str, n: u32, name: &str) -> ConfigObject {
        ConfigObject::new(code, format!("{n:032x}"), name)
    }

    fn with_text(mut o: ConfigObject, bytes: usize) -> ConfigObject {
        o.fields.insert("notes".into(), Value::String("x".repeat(bytes)));
        o
    }

    fn owned(mut o: ConfigObject, parent: &ConfigObject) -> ConfigObject {
        o.parent = Some(ObjectKey::new(&parent.obj_code, &parent.id));
        o
    }

    fn refer(mut o: ConfigObject, target: &ConfigObject) -> ConfigObject {
        o.references.push(Reference {
            field: "owner".into(),
            obj_code: target.obj_code.clone(),
            id: target.id.clone(),
            optional: false,
        });
        o
    }

    fn chunk_len(c: &DefinitionChunk) -> usize {
        c.objects.iter().map(|o| wire::repeated_item_len(wire::config_object_len(o))).sum::<usize>()
            + c.external_references
                .iter()
                .map(|r| wire::repeated_item_len(wire::external_reference_len(r)))
                .sum::<usize>()
    }

    fn sample() -> Content {
        let tmpl = obj("TMPL", 1, "Onboarding");
        let group = obj("GROUP", 2, "Ops");
        let task = refer(owned(obj("TTSK", 3, "Kick-off"), &tmpl), &group);
        Content {
            objects: vec![task, tmpl, group],
            external_references: vec![ExternalReference {
                obj_code: "ROLE".into(),
                id: format!("{:032x}", 9),
                name: "PM".into(),
            }],
        }
    }

    #[test]
    fn objects_come_in_install_order_once_each() {
        let catalog = workfront();
        let mut content = sample();
        content.objects.push(content.objects[0].clone());
        let built = build(&catalog, &["TMPL".into()], content, 512 * 1024).unwrap();
        assert_eq!(built.chunks.len(), 1);
        let entities = &built.chunks[0];
        let codes: Vec<_> = entities.objects.iter().map(|o| o.obj_code.as_str()).collect();
        assert_eq!(codes, vec!["GROUP", "TMPL", "TTSK"]);
        assert_eq!(entities.external_references.len(), 1);
        assert_eq!(built.entity_total, 3);
        assert_eq!(built.entity_counts, BTreeMap::from([("GROUP".into(), 1), ("TMPL".into(), 1), ("TTSK".into(), 1)]));
        assert_eq!(built.metadata.install_order, vec!["GROUP", "TMPL", "TTSK"]);
        assert_eq!(built.metadata.display_order, vec!["TMPL", "GROUP", "TTSK"]);
    }

    #[test]
    fn the_digest_depends_on_content_only() {
        let catalog = workfront();
        let a = build(&catalog, &["TMPL".into()], sample(), 512 * 1024).unwrap();
        let mut shuffled = sample();
        shuffled.objects.reverse();
        shuffled.objects[0].revision = 42;
        let b = build(&catalog, &[], shuffled, 100).unwrap();
        assert_eq!(a.digest, b.digest, "order, revisions and chunking do not change the digest");
        assert!(a.digest.starts_with("sha256:") && a.digest.len() == 7 + 64);
        let mut changed = sample();
        changed.objects[1].name = "Onboarding v2".into();
        assert_ne!(build(&catalog, &[], changed, 512 * 1024).unwrap().digest, a.digest);
        let mut fewer = sample();
        fewer.external_references.clear();
        assert_ne!(build(&catalog, &[], fewer, 512 * 1024).unwrap().digest, a.digest);
    }

    #[test]
    fn chunks_stay_within_the_budget_and_the_message_bound() {
        let catalog = workfront();
        let tmpl = obj("TMPL", 1, "Big");
        let mut objects = vec![tmpl.clone()];
        objects.extend((2..2002).map(|n| with_text(owned(obj("TTSK", n, "Task"), &tmpl), 1000)));
        let built = build(&catalog, &[], Content { objects, external_references: vec![] }, 64 * 1024).unwrap();
        assert!(built.chunks.len() > 20);
        let total: usize = built.chunks.iter().map(|c| c.objects.len()).sum();
        assert_eq!(total, 2001);
        assert!(built.chunks.iter().all(|c| chunk_len(c) <= 64 * 1024));
        // An oversized budget is clamped to the message bound.
        let big: Vec<ConfigObject> = (1..=5).map(|n| with_text(obj("TMPL", n, "Huge"), 250 * 1024)).collect();
        let built = build(&catalog, &[], Content { objects: big, external_references: vec![] }, usize::MAX).unwrap();
        assert_eq!(built.chunks.len(), 2);
        assert!(built.chunks.iter().all(|c| chunk_len(c) + ENVELOPE_BYTES <= MAX_MESSAGE_BYTES));
        let huge = vec![with_text(obj("TMPL", 1, "Too big"), MAX_MESSAGE_BYTES)];
        let err = build(&catalog, &[], Content { objects: huge, external_references: vec![] }, 1024).unwrap_err();
        assert!(err.contains("TMPL 00000000000000000000000000000001"), "{err}");
    }

    #[test]
    fn an_empty_definition_has_a_digest_and_no_chunks() {
        let built = build(&workfront(), &[], Content::default(), 1024).unwrap();
        assert!(built.chunks.is_empty());
        assert_eq!(built.entity_total, 0);
        assert!(built.digest.starts_with("sha256:"));
    }

    fn rejection(content: &Content) -> &'static str {
        validate(&workfront(), content).unwrap_err().reason
    }

    #[test]
    fn given_definitions_must_be_complete_and_well_formed() {
        assert_eq!(validate(&workfront(), &sample()), Ok(()));
        let mut c = sample();
        c.objects[0].obj_code = "NOPE".into();
        assert_eq!(rejection(&c), "UNKNOWN_TYPE");
        let mut c = sample();
        c.objects[1].id = "ABC".into();
        assert_eq!(rejection(&c), "INVALID_ID");
        let mut c = sample();
        c.objects.push(c.objects[1].clone());
        assert_eq!(rejection(&c), "DUPLICATE_OBJECT");
        let mut c = sample();
        c.objects.remove(2);
        assert_eq!(rejection(&c), "UNRESOLVED_REFERENCE", "the task's group is gone");
        let mut c = sample();
        c.objects.remove(1);
        assert_eq!(rejection(&c), "UNRESOLVED_REFERENCE", "the task's template is gone");
        let mut c = sample();
        c.objects[0].parent = None;
        assert_eq!(rejection(&c), "PARENT_REQUIRED");
        let mut c = sample();
        c.objects[1].name = " ".into();
        assert_eq!(rejection(&c), "INVALID_NAME");
        let mut c = sample();
        c.external_references[0].id = "x".into();
        assert_eq!(rejection(&c), "INVALID_ID");
        // An external reference resolves a pointer the package does not carry.
        let mut c = sample();
        let group = c.objects.remove(2);
        c.external_references.push(ExternalReference { obj_code: group.obj_code, id: group.id, name: group.name });
        assert_eq!(validate(&workfront(), &c), Ok(()));
    }

    #[test]
    fn never_carried_types_and_excluded_fields_stay_behind() {
        let catalog = apim();
        let member = obj("MEMBER", 1, "jane");
        let c = Content { objects: vec![member], external_references: vec![] };
        assert_eq!(validate(&catalog, &c).unwrap_err().reason, "TYPE_NOT_CARRIED");
        let mut api = with_text(obj("API", 2, "Payments"), 3);
        api.fields.insert("members".into(), json!(true));
        let mut c = Content { objects: vec![api], external_references: vec![] };
        strip_excluded_fields(&catalog, &mut c);
        assert_eq!(c.objects[0].fields.keys().collect::<Vec<_>>(), vec!["notes"]);
    }
}
