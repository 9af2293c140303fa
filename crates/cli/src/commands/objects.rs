//! `objects list/show/put/patch/edit/delete`: configuration objects of an environment,
//! with object files in JSON or YAML (the proto3 JSON shape of `ConfigObject`). Changes to
//! an existing object are conditional on the revision it was read at (PutObjects'
//! `expected_revisions`): `patch` and `edit` read it themselves, `put` takes the file's.
//! A `put` that would remove fields or references of an existing object shows what and
//! asks first.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::env::more;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, confirm, details, emit, from_json, note, or_dash, safe, time, to_json, Out, Style, Table};
use crate::parse::parse_type;
use crate::{GlobalArgs, PageArgs};
use promotion_api::convert::struct_to_map;
use promotion_api::v1 as pb;

#[derive(clap::Args, Debug)]
pub struct ObjectsArgs {
    #[command(subcommand)]
    pub command: ObjectsCommand,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum ObjectsCommand {
    /// List objects of one type in an environment.
    #[command(after_help = "Example:\n  promotion objects list --env dev --type TMPL")]
    List {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code, e.g. TMPL, GROUP, TASK (any case; see `promotion env catalog ENV`).
        #[arg(long = "type", short = 't', value_name = "TYPE", value_parser = parse_type)]
        obj_code: String,
        /// Only objects whose name starts with this.
        #[arg(long, default_value = "", hide_default_value = true)]
        name_prefix: String,
        /// Only sub-objects of this parent id.
        #[arg(long, default_value = "", hide_default_value = true)]
        parent: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one object: name, parent, fields, references.
    #[command(after_help = "Example:\n  promotion objects show --env dev TMPL 6419b8b9001151ee258921a4f7597bb2\n  \
        promotion objects show --env dev TMPL 6419b8b9001151ee258921a4f7597bb2 --output json > tmpl.json")]
    Show {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code (any case).
        #[arg(value_name = "TYPE", value_parser = parse_type)]
        obj_code: String,
        /// Object id (32 lowercase hex characters).
        id: String,
    },
    /// Create or replace objects from a JSON or YAML file, atomically.
    #[command(after_help = "The file holds one object, a list of objects, or {\"objects\": [...]}, in the shape\n\
        `objects show --output json` prints (objCode or obj_code, id, name, fields, parent,\n\
        references); objects without an id get a generated one. Each object replaces the\n\
        stored one whole: when that would remove fields or references, put shows them and\n\
        asks (refuses without a terminal unless --yes); `objects patch` changes only what\n\
        it names. A `revision` in the file (as `objects show` prints it) makes the put\n\
        conditional: if the object changed since, nothing is written (ABORTED\n\
        REVISION_MISMATCH). Example (YAML):\n\n  \
        - objCode: GROUP\n    \
          name: Agency Partners\n    \
          fields: {description: External agencies we work with}\n\n\
        promotion objects put --env dev groups.yaml")]
    Put {
        /// Environment id [default: the file's `environment`].
        #[arg(long, short = 'e')]
        env: Option<String>,
        /// JSON or YAML file (by extension; other names are tried as JSON, then YAML); `-` reads standard input.
        file: PathBuf,
        /// Remove fields and references the file leaves out without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Idempotency key (UUID): repeating the call returns the first response.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Change some fields of an object and keep everything else (a JSON merge patch, or
    /// --set / --unset), conditional on the revision it reads.
    #[command(after_help = "Paths are those of `objects show --output json`: name, parent, references,\n\
        fields.KEY (nested: fields.KEY.SUB). Values are JSON when they parse as JSON (12, true,\n\
        [\"a\"], {\"k\": 1}), else text. A PATCH file is a JSON merge patch (RFC 7386) of the\n\
        object, in JSON or YAML: the keys it has replace, null removes, the rest stays.\n\
        Examples:\n  \
        promotion objects patch --env dev TMPL 6419b8b9001151ee258921a4f7597bc3 --set fields.planned_duration_days=12\n  \
        promotion objects patch --env dev GROUP ID --set name=\"Agency Partners\" --unset fields.legacy_code\n  \
        promotion objects patch --env dev TMPL ID changes.yaml\n\n\
        If the object changes between the read and the write, nothing is written (ABORTED\n\
        REVISION_MISMATCH): run the patch again.")]
    Patch {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code (any case).
        #[arg(value_name = "TYPE", value_parser = parse_type)]
        obj_code: String,
        /// Object id.
        id: String,
        /// A JSON merge patch of the object (JSON or YAML; `-`: standard input).
        #[arg(value_name = "PATCH")]
        file: Option<PathBuf>,
        /// Set PATH to VALUE (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Remove PATH (repeatable).
        #[arg(long = "unset", value_name = "PATH")]
        unsets: Vec<String>,
        /// Idempotency key (UUID).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Edit an object in $VISUAL or $EDITOR (YAML), then put it, conditional on the revision
    /// it read.
    #[command(
        after_help = "Example:\n  EDITOR=nano promotion objects edit --env dev GROUP 6419b8b9001151ee2589d3e59e3779b1\n\n\
        Saving the file unchanged, or emptying it, changes nothing."
    )]
    Edit {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code (any case).
        #[arg(value_name = "TYPE", value_parser = parse_type)]
        obj_code: String,
        /// Object id.
        id: String,
        /// Idempotency key (UUID).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Delete an object (with --cascade: its children too, and references to them); asks first.
    Delete {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code (any case).
        #[arg(value_name = "TYPE", value_parser = parse_type)]
        obj_code: String,
        /// Object id.
        id: String,
        /// Also delete owned children and drop references to the deleted objects.
        #[arg(long)]
        cascade: bool,
        /// Do not ask for confirmation (required when standard input is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Idempotency key (UUID).
        #[arg(long)]
        request_id: Option<String>,
    },
}

pub async fn run(session: &Session, out: &Out, command: ObjectsCommand) -> Result<(), CliError> {
    match command {
        ObjectsCommand::List { env, obj_code, name_prefix, parent, page } => {
            list(
                session,
                out,
                pb::ListObjectsRequest {
                    environment: env,
                    obj_code,
                    name_prefix,
                    parent_id: parent,
                    ..Default::default()
                },
                page,
            )
            .await
        }
        ObjectsCommand::Show { env, obj_code, id } => {
            let o = get(session, &env, &obj_code, &id).await?;
            emit(out, &o, std::slice::from_ref(&o.id), || render_object(out, &o))
        }
        ObjectsCommand::Put { env, file, yes, request_id } => put(session, out, env, &file, yes, request_id).await,
        ObjectsCommand::Patch { env, obj_code, id, file, sets, unsets, request_id } => {
            let patch = match &file {
                Some(path) => Some(read_document(path)?),
                None => None,
            };
            if patch.is_none() && sets.is_empty() && unsets.is_empty() {
                return Err(CliError::usage("nothing to change: give a PATCH file, --set PATH=VALUE or --unset PATH"));
            }
            let current = get(session, &env, &obj_code, &id).await?;
            let mut doc = editable(&current)?;
            if let Some(patch) = patch {
                merge_patch(&mut doc, camel_case_keys(patch));
            }
            for set in &sets {
                let (path, value) =
                    set.split_once('=').ok_or_else(|| CliError::usage(format!("--set {set:?} is not PATH=VALUE")))?;
                set_path(&mut doc, path.trim(), Some(parse_value(value)))?;
            }
            for path in &unsets {
                set_path(&mut doc, path.trim(), None)?;
            }
            write_changed(session, out, &env, current, doc, request_id).await
        }
        ObjectsCommand::Edit { env, obj_code, id, request_id } => {
            let current = get(session, &env, &obj_code, &id).await?;
            let Some(doc) = edit_in_editor(&current)? else {
                note(out, "No changes: nothing was written");
                return Ok(());
            };
            write_changed(session, out, &env, current, doc, request_id).await
        }
        ObjectsCommand::Delete { env, obj_code, id, cascade, yes, request_id } => {
            if !yes {
                let what = format!("delete {obj_code}:{id} from {env}");
                let extra = if cascade { ", with its children and the references to them" } else { "" };
                confirm(&format!("Delete {obj_code}:{id} from {env}{extra}?"), &what)?;
            }
            let request = pb::DeleteObjectRequest {
                environment: env,
                obj_code,
                id,
                cascade,
                request_id: request_id.unwrap_or_else(new_request_id),
            };
            delete(session, out, request).await
        }
    }
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn get(session: &Session, env: &str, obj_code: &str, id: &str) -> Result<pb::ConfigObject, CliError> {
    let request = pb::GetObjectRequest { environment: env.into(), obj_code: obj_code.into(), id: id.into() };
    Ok(session.environments_for(env).await?.get_object(session.request(request)).await?.into_inner())
}

async fn list(
    session: &Session,
    out: &Out,
    mut request: pb::ListObjectsRequest,
    page: PageArgs,
) -> Result<(), CliError> {
    let mut client = session.environments_for(&request.environment).await?;
    let mut response = pb::ListObjectsResponse { objects: vec![], next_page_token: page.page_token };
    request.page_size = page.page_size;
    loop {
        request.page_token = std::mem::take(&mut response.next_page_token);
        let next = client.list_objects(session.request(request.clone())).await?.into_inner();
        response.objects.extend(next.objects);
        response.next_page_token = next.next_page_token;
        if !page.all || response.next_page_token.is_empty() {
            break;
        }
    }
    let ids: Vec<String> = response.objects.iter().map(|o| o.id.clone()).collect();
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["ID", "NAME", "PARENT", "REVISION", "UPDATED"]);
        for o in &response.objects {
            table.row(vec![
                cell(&o.id, Style::Dim),
                cell(&o.name, Style::Bold),
                o.parent.as_ref().map_or("-".into(), |p| format!("{}:{}", p.obj_code, p.id)).into(),
                o.revision.to_string().into(),
                time(&o.update_time).into(),
            ]);
        }
        table.render(out, "") + &more(out, &response.next_page_token)
    })
}

pub fn render_object(out: &Out, o: &pb::ConfigObject) -> String {
    let mut text = details(
        out,
        &[
            ("Type", o.obj_code.clone().into()),
            ("Id", o.id.clone().into()),
            ("Name", o.name.clone().into()),
            ("Parent", o.parent.as_ref().map_or("-".into(), |p| format!("{}:{}", p.obj_code, p.id)).into()),
            ("Revision", o.revision.to_string().into()),
            ("Updated", time(&o.update_time).into()),
        ],
    );
    let fields = o.fields.as_ref().map(struct_to_map).unwrap_or_default();
    text.push_str(&out.paint(Style::Bold, "Fields:"));
    if fields.is_empty() {
        text.push_str(" -\n");
    } else {
        // JSON escapes control characters in keys and values.
        let pretty = serde_json::to_string_pretty(&Json::Object(fields)).unwrap_or_default();
        text.push('\n');
        for line in pretty.lines() {
            text.push_str(&format!("  {}\n", safe(line)));
        }
    }
    if !o.references.is_empty() {
        text.push_str(&out.paint(Style::Bold, "References:"));
        text.push('\n');
        let mut table = Table::new(&["FIELD", "TYPE", "ID", "OPTIONAL"]);
        for r in &o.references {
            table.row(vec![
                r.field.as_str().into(),
                r.obj_code.as_str().into(),
                r.id.as_str().into(),
                (if r.optional { "yes" } else { "-" }).into(),
            ]);
        }
        text.push_str(&table.render(out, "  "));
    }
    text
}

fn read_text(file: &Path) -> Result<String, CliError> {
    if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))
    }
}

/// A JSON or YAML document from a file.
fn read_document(file: &Path) -> Result<Json, CliError> {
    let text = read_text(file)?;
    parse_document(&text, format_of(file)).map_err(|e| CliError::usage(format!("{}: {e}", file.display())))
}

fn parse_document(text: &str, format: FileFormat) -> Result<Json, String> {
    let yaml = |t: &str| serde_yaml::from_str::<Json>(t).map_err(|e| format!("not valid YAML: {e}"));
    let json = |t: &str| serde_json::from_str::<Json>(t).map_err(|e| format!("not valid JSON: {e}"));
    match format {
        FileFormat::Json => json(text),
        FileFormat::Yaml => yaml(text),
        FileFormat::Guess => json(text).or_else(|_| yaml(text)),
    }
}

async fn put(
    session: &Session,
    out: &Out,
    env: Option<String>,
    file: &Path,
    yes: bool,
    request_id: Option<String>,
) -> Result<(), CliError> {
    let text = read_text(file)?;
    let mut request =
        parse_objects_file(&text, format_of(file)).map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
    if let Some(env) = env {
        request.environment = env;
    }
    if request.environment.is_empty() {
        return Err(CliError::usage("which environment? pass --env (the file names none)"));
    }
    if let Some(id) = request_id {
        request.request_id = id;
    }
    if request.request_id.is_empty() {
        request.request_id = new_request_id();
    }
    let environment = request.environment.clone();
    let mut client = session.environments_for(&environment).await?;
    // What each object of the file would remove from the stored one.
    let mut removals = Vec::new();
    for o in request.objects.iter_mut() {
        // A revision in the file is the one it was read at: the put is conditional on it.
        if o.revision > 0 && !o.id.is_empty() {
            request.expected_revisions.entry(o.id.clone()).or_insert(o.revision);
        }
        o.revision = 0;
        if o.id.is_empty() {
            continue;
        }
        let get =
            pb::GetObjectRequest { environment: environment.clone(), obj_code: o.obj_code.clone(), id: o.id.clone() };
        let stored = match client.get_object(session.request(get)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => continue,
            Err(s) => return Err(s.into()),
        };
        let changes = object_changes(&editable(&stored)?, &editable(o)?);
        if changes.iter().any(|c| c.removes()) {
            removals.push((format!("{}:{} {:?}", o.obj_code, o.id, stored.name), changes));
        }
    }
    if !removals.is_empty() && !yes {
        let mut text = String::from("This put replaces whole objects and would remove:\n");
        for (what, changes) in &removals {
            text.push_str(&format!("  {}\n", safe(what)));
            for c in changes {
                text.push_str(&c.render(out));
            }
        }
        eprint!("{text}");
        confirm(
            "Put anyway? (`promotion objects patch` changes only the fields it names)",
            "remove fields or references of existing objects",
        )?;
    }
    let count = request.objects.len();
    let response = client.put_objects(session.request(request)).await?.into_inner();
    note(out, format!("Stored {count} object(s) in {environment} (revision {})", response.revision));
    print_stored(out, &response)
}

fn print_stored(out: &Out, response: &pb::PutObjectsResponse) -> Result<(), CliError> {
    let ids: Vec<String> = response.objects.iter().map(|o| o.id.clone()).collect();
    emit(out, response, &ids, || {
        let mut table = Table::new(&["TYPE", "ID", "NAME", "REVISION"]);
        for o in &response.objects {
            table.row(vec![
                o.obj_code.as_str().into(),
                cell(&o.id, Style::Dim),
                cell(&o.name, Style::Bold),
                o.revision.to_string().into(),
            ]);
        }
        table.render(out, "")
    })
}

/// Puts `doc` (the edited `current`) conditional on the revision `current` was read at.
async fn write_changed(
    session: &Session,
    out: &Out,
    env: &str,
    current: pb::ConfigObject,
    doc: Json,
    request_id: Option<String>,
) -> Result<(), CliError> {
    let before = editable(&current)?;
    let changes = object_changes(&before, &doc);
    if changes.is_empty() {
        note(out, "No changes: nothing was written");
        return Ok(());
    }
    let mut object: pb::ConfigObject =
        from_json(doc).map_err(|e| CliError::usage(format!("the changed object is not valid: {e}")))?;
    if object.obj_code != current.obj_code || object.id != current.id {
        return Err(CliError::usage("objCode and id identify the object: they cannot change"));
    }
    object.revision = 0;
    let request = pb::PutObjectsRequest {
        environment: env.to_string(),
        objects: vec![object],
        request_id: request_id.unwrap_or_else(new_request_id),
        expected_revisions: HashMap::from([(current.id.clone(), current.revision)]),
    };
    let response = session.environments_for(env).await?.put_objects(session.request(request)).await?.into_inner();
    if out.format == crate::output::Format::Human {
        let mut text = format!(
            "Changed {}:{} {:?} in {env} (revision {} -> {}):\n",
            current.obj_code, current.id, current.name, current.revision, response.revision
        );
        for c in &changes {
            text.push_str(&c.render(out));
        }
        eprint!("{}", safe_lines(&text));
    }
    print_stored(out, &response)
}

fn safe_lines(text: &str) -> String {
    text.lines().map(|l| safe(l).into_owned() + "\n").collect()
}

/// An object as `objects show --output json` prints it, without what only the service
/// writes (revision, update time).
fn editable(o: &pb::ConfigObject) -> Result<Json, CliError> {
    let mut doc = to_json(o)?;
    if let Json::Object(map) = &mut doc {
        map.remove("revision");
        map.remove("updateTime");
        if map.get("parent").is_some_and(Json::is_null) {
            map.remove("parent");
        }
    }
    Ok(doc)
}

/// Patch files may spell the object's own keys in snake_case as object files do.
fn camel_case_keys(patch: Json) -> Json {
    match patch {
        Json::Object(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = match k.as_str() {
                        "obj_code" => "objCode".to_string(),
                        "update_time" => "updateTime".to_string(),
                        _ => k,
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Json, patch: Json) {
    match patch {
        Json::Object(patch) => {
            if !target.is_object() {
                *target = Json::Object(Default::default());
            }
            let map = target.as_object_mut().expect("an object");
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(&key);
                } else {
                    merge_patch(map.entry(key).or_insert(Json::Null), value);
                }
            }
        }
        other => *target = other,
    }
}

/// `12`, `true`, `"x"`, `[..]`, `{..}` as JSON; anything else as text.
fn parse_value(text: &str) -> Json {
    serde_json::from_str(text.trim()).unwrap_or_else(|_| Json::String(text.to_string()))
}

/// Sets (or with None removes) a dotted path of an object document.
fn set_path(doc: &mut Json, path: &str, value: Option<Json>) -> Result<(), CliError> {
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(CliError::usage(format!("{path:?} is not a path like fields.KEY")));
    }
    if parts[0] == "obj_code" {
        parts[0] = "objCode".into();
    }
    let top = ["name", "fields", "parent", "references"];
    if ["objCode", "id"].contains(&parts[0].as_str()) {
        return Err(CliError::usage(format!("{} identifies the object: it cannot change", parts[0])));
    }
    if !top.contains(&parts[0].as_str()) {
        return Err(CliError::usage(format!(
            "{path:?}: an object has name, fields, parent and references; a field is fields.{path}"
        )));
    }
    let mut node = doc;
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            return Err(CliError::usage(format!("{path:?}: {} is not an object", parts[..i].join("."))));
        }
        let map = node.as_object_mut().expect("an object");
        if i + 1 == parts.len() {
            match &value {
                Some(v) => {
                    map.insert(part.clone(), v.clone());
                }
                None => {
                    if map.remove(part).is_none() {
                        return Err(CliError::usage(format!("--unset {path}: there is no such field")));
                    }
                }
            }
            return Ok(());
        }
        node = map.entry(part.clone()).or_insert_with(|| Json::Object(Default::default()));
    }
    Ok(())
}

/// One difference between two versions of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub before: Option<Json>,
    pub after: Option<Json>,
}

impl Change {
    /// True when the change takes something away (a field, a reference, the parent).
    pub fn removes(&self) -> bool {
        self.before.is_some() && self.after.is_none()
    }

    fn render(&self, out: &Out) -> String {
        let show = |v: &Json| match v {
            Json::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        let mut text = String::new();
        if let Some(b) = &self.before {
            text.push_str(&format!(
                "      {}\n",
                out.paint(Style::Red, &safe(&format!("- {}: {}", self.path, show(b))))
            ));
        }
        if let Some(a) = &self.after {
            text.push_str(&format!(
                "      {}\n",
                out.paint(Style::Green, &safe(&format!("+ {}: {}", self.path, show(a))))
            ));
        }
        text
    }
}

/// What differs between two object documents: name, parent, each field (nested objects
/// key by key) and the references of each reference field.
pub fn object_changes(before: &Json, after: &Json) -> Vec<Change> {
    let mut changes = Vec::new();
    let get = |doc: &Json, key: &str| doc.get(key).filter(|v| !v.is_null()).cloned();
    for key in ["name", "parent"] {
        let (b, a) = (get(before, key), get(after, key));
        if b != a {
            changes.push(Change { path: key.into(), before: b, after: a });
        }
    }
    let empty = Json::Object(Default::default());
    diff_values("fields", before.get("fields").unwrap_or(&empty), after.get("fields").unwrap_or(&empty), &mut changes);
    let refs = |doc: &Json| -> BTreeMap<String, BTreeSet<String>> {
        let mut by_field: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in doc.get("references").and_then(Json::as_array).into_iter().flatten() {
            let field = r["field"].as_str().unwrap_or_default().to_string();
            let code = r.get("objCode").or_else(|| r.get("obj_code")).and_then(Json::as_str).unwrap_or_default();
            by_field.entry(field).or_default().insert(format!("{code}:{}", r["id"].as_str().unwrap_or_default()));
        }
        by_field
    };
    let (b, a) = (refs(before), refs(after));
    for field in b.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
        let path = format!("references.{field}");
        let (old, new) = (b.get(field).cloned().unwrap_or_default(), a.get(field).cloned().unwrap_or_default());
        for gone in old.difference(&new) {
            changes.push(Change { path: path.clone(), before: Some(Json::String(gone.clone())), after: None });
        }
        for added in new.difference(&old) {
            changes.push(Change { path: path.clone(), before: None, after: Some(Json::String(added.clone())) });
        }
    }
    changes
}

fn diff_values(path: &str, before: &Json, after: &Json, changes: &mut Vec<Change>) {
    match (before, after) {
        (Json::Object(b), Json::Object(a)) => {
            for key in b.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
                let sub = format!("{path}.{key}");
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => diff_values(&sub, x, y, changes),
                    (x, y) => changes.push(Change { path: sub, before: x.cloned(), after: y.cloned() }),
                }
            }
        }
        (x, y) if x != y => changes.push(Change { path: path.into(), before: Some(x.clone()), after: Some(y.clone()) }),
        _ => {}
    }
}

/// Opens the object in the user's editor as YAML; None when it was saved unchanged or
/// emptied.
fn edit_in_editor(current: &pb::ConfigObject) -> Result<Option<Json>, CliError> {
    let doc = editable(current)?;
    let yaml = serde_yaml::to_string(&doc).map_err(|e| CliError::failed(e.to_string()))?;
    let header = format!(
        "# {}:{} in revision {}. Save to put it; the put fails, writing nothing, if the object\n\
         # changes meanwhile. Save it unchanged or empty to change nothing.\n",
        current.obj_code, current.id, current.revision
    );
    // A private directory of our own, removed afterwards (the object may be confidential).
    let dir = std::env::temp_dir().join(format!("promotion-edit-{}", uuid::Uuid::new_v4()));
    std::fs::DirBuilder::new().create(&dir).map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join(format!("{}-{}.yaml", current.obj_code, current.id));
    std::fs::write(&path, format!("{header}{yaml}")).map_err(|e| CliError::failed(e.to_string()))?;
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    // Through the shell, as git does, so that EDITOR may carry arguments ("code --wait").
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| CliError::failed(format!("cannot run the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(CliError::failed(format!("the editor {editor:?} failed ({status}); nothing was written")));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| CliError::failed(e.to_string()))?;
    if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Ok(None);
    }
    let edited = serde_yaml::from_str::<Json>(&text)
        .map_err(|e| CliError::usage(format!("the edited object is not valid YAML ({e}); nothing was written")))?;
    Ok((edited != doc).then_some(edited))
}

async fn delete(session: &Session, out: &Out, request: pb::DeleteObjectRequest) -> Result<(), CliError> {
    let environment = request.environment.clone();
    let response =
        session.environments_for(&environment).await?.delete_object(session.request(request)).await?.into_inner();
    let ids: Vec<String> = response.deleted.iter().map(|k| k.id.clone()).collect();
    note(
        out,
        format!("Deleted {} object(s) from {environment} (revision {})", response.deleted.len(), response.revision),
    );
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["TYPE", "ID"]);
        for k in &response.deleted {
            table.row(vec![k.obj_code.as_str().into(), or_dash(&k.id).into()]);
        }
        table.render(out, "")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Yaml,
    /// Unknown extension: JSON first, then YAML.
    Guess,
}

fn format_of(path: &Path) -> FileFormat {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => FileFormat::Json,
        Some("yaml" | "yml") => FileFormat::Yaml,
        _ => FileFormat::Guess,
    }
}

/// An object file as a PutObjects request: one object, a list of objects, or the request
/// itself (`{"environment": ..., "objects": [...]}`).
pub fn parse_objects_file(text: &str, format: FileFormat) -> Result<pb::PutObjectsRequest, String> {
    let value = parse_document(text, format)?;
    let request = match value {
        Json::Array(items) => pb::PutObjectsRequest {
            objects: items.into_iter().enumerate().map(|(i, v)| object(v, i)).collect::<Result<_, _>>()?,
            ..Default::default()
        },
        Json::Object(map) if map.contains_key("objects") => {
            from_json::<pb::PutObjectsRequest>(Json::Object(map)).map_err(|e| format!("not a list of objects: {e}"))?
        }
        Json::Object(map) => {
            pb::PutObjectsRequest { objects: vec![object(Json::Object(map), 0)?], ..Default::default() }
        }
        _ => return Err("expected an object, a list of objects, or {\"objects\": [...]}".into()),
    };
    if request.objects.is_empty() {
        return Err("the file holds no objects".into());
    }
    Ok(request)
}

fn object(value: Json, index: usize) -> Result<pb::ConfigObject, String> {
    from_json::<pb::ConfigObject>(value).map_err(|e| format!("object #{}: {e}", index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_list_of_objects_parses() {
        let text = "- objCode: GROUP\n  name: Partners\n  fields: {size: 3}\n- obj_code: ROLE\n  name: Lead\n";
        let r = parse_objects_file(text, FileFormat::Yaml).unwrap();
        assert_eq!(r.objects.len(), 2);
        assert_eq!(r.objects[1].obj_code, "ROLE");
        let fields = struct_to_map(r.objects[0].fields.as_ref().unwrap());
        assert_eq!(fields["size"], 3);
    }

    #[test]
    fn a_single_object_as_shown_by_objects_show_parses_back() {
        let text = r#"{"objCode":"TMPL","id":"6419b8b9001151ee258921a4f7597bb2","name":"N","fields":{},
            "parent":null,"references":[{"field":"owner","objCode":"GROUP","id":"ab","optional":false}],
            "revision":7,"updateTime":"2026-01-01T00:00:00Z"}"#;
        let r = parse_objects_file(text, FileFormat::Guess).unwrap();
        assert_eq!(r.objects[0].references[0].obj_code, "GROUP");
        assert!(r.environment.is_empty());
    }

    #[test]
    fn a_request_shaped_file_keeps_its_environment() {
        let r =
            parse_objects_file(r#"{"environment":"dev","objects":[{"objCode":"GROUP","name":"x"}]}"#, FileFormat::Json)
                .unwrap();
        assert_eq!(r.environment, "dev");
    }

    #[test]
    fn patches_merge_and_paths_set_and_unset() {
        let mut doc = serde_json::json!({"objCode": "TMPL", "id": "x", "name": "N",
            "fields": {"a": 1, "b": {"c": 2, "d": 3}}, "references": [{"field": "owner", "objCode": "GROUP", "id": "g"}]});
        merge_patch(&mut doc, serde_json::json!({"fields": {"a": null, "b": {"c": 5}}}));
        assert_eq!(doc["fields"], serde_json::json!({"b": {"c": 5, "d": 3}}));
        set_path(&mut doc, "fields.e.f", Some(parse_value("12"))).unwrap();
        set_path(&mut doc, "name", Some(parse_value("New name"))).unwrap();
        assert_eq!((doc["fields"]["e"]["f"].as_i64(), doc["name"].as_str()), (Some(12), Some("New name")));
        set_path(&mut doc, "fields.b.d", None).unwrap();
        assert!(set_path(&mut doc, "fields.nope", None).is_err());
        assert!(set_path(&mut doc, "id", Some(Json::Null)).is_err());
        assert!(set_path(&mut doc, "priority", Some(Json::Null)).unwrap_err().to_string().contains("fields.priority"));
        assert_eq!(doc["references"].as_array().unwrap().len(), 1, "references stay");
    }

    #[test]
    fn changes_name_what_goes_away() {
        let before = serde_json::json!({"name": "N", "fields": {"a": 1, "b": 2},
            "references": [{"field": "owner", "objCode": "GROUP", "id": "g1"}, {"field": "owner", "objCode": "GROUP", "id": "g2"}]});
        let after = serde_json::json!({"name": "N", "fields": {"a": 3},
            "references": [{"field": "owner", "objCode": "GROUP", "id": "g1"}]});
        let changes = object_changes(&before, &after);
        let removed: Vec<&str> = changes.iter().filter(|c| c.removes()).map(|c| c.path.as_str()).collect();
        assert_eq!(removed, ["fields.b", "references.owner"]);
        assert!(changes.iter().any(|c| c.path == "fields.a" && c.after == Some(serde_json::json!(3))));
        assert!(object_changes(&before, &before).is_empty());
    }

    #[test]
    fn bad_files_say_why() {
        assert!(parse_objects_file("[]", FileFormat::Json).unwrap_err().contains("no objects"));
        assert!(parse_objects_file("[{\"objcode\":\"X\"}]", FileFormat::Json).unwrap_err().contains("object #1"));
        assert!(parse_objects_file("{", FileFormat::Json).unwrap_err().contains("JSON"));
        assert!(parse_objects_file("3", FileFormat::Guess).is_err());
    }
}
