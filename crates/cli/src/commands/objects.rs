//! `objects list/show/put/delete`: configuration objects of an environment, with object
//! files in JSON or YAML (the proto3 JSON shape of `ConfigObject`).
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::env::more;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, details, emit, from_json, note, or_dash, time, Out, Style, Table};
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
        /// Object type code, e.g. TMPL, GROUP, TASK (see `promotion env catalog ENV`).
        #[arg(long = "type", short = 't', value_name = "TYPE")]
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
        /// Object type code.
        #[arg(value_name = "TYPE")]
        obj_code: String,
        /// Object id (32 lowercase hex characters).
        id: String,
    },
    /// Create or update objects from a JSON or YAML file, atomically.
    #[command(after_help = "The file holds one object, a list of objects, or {\"objects\": [...]}, in the shape\n\
        `objects show --output json` prints (objCode or obj_code, id, name, fields, parent,\n\
        references); objects without an id get a generated one. Example (YAML):\n\n  \
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
        /// Idempotency key (UUID): repeating the call returns the first response.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Delete an object (with --cascade: its children too, and references to them).
    Delete {
        /// Environment id.
        #[arg(long, short = 'e')]
        env: String,
        /// Object type code.
        #[arg(value_name = "TYPE")]
        obj_code: String,
        /// Object id.
        id: String,
        /// Also delete owned children and drop references to the deleted objects.
        #[arg(long)]
        cascade: bool,
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
        ObjectsCommand::Show { env, obj_code, id } => show(session, out, env, obj_code, id).await,
        ObjectsCommand::Put { env, file, request_id } => put(session, out, env, &file, request_id).await,
        ObjectsCommand::Delete { env, obj_code, id, cascade, request_id } => {
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

async fn list(
    session: &Session,
    out: &Out,
    mut request: pb::ListObjectsRequest,
    page: PageArgs,
) -> Result<(), CliError> {
    let mut client = session.environments().await?;
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

async fn show(session: &Session, out: &Out, environment: String, obj_code: String, id: String) -> Result<(), CliError> {
    let request = pb::GetObjectRequest { environment, obj_code, id };
    let o = session.environments().await?.get_object(session.request(request)).await?.into_inner();
    emit(out, &o, std::slice::from_ref(&o.id), || render_object(out, &o))
}

pub fn render_object(out: &Out, o: &pb::ConfigObject) -> String {
    let mut text = details(
        out,
        &[
            ("Type", o.obj_code.clone()),
            ("Id", o.id.clone()),
            ("Name", o.name.clone()),
            ("Parent", o.parent.as_ref().map_or("-".into(), |p| format!("{}:{}", p.obj_code, p.id))),
            ("Revision", o.revision.to_string()),
            ("Updated", time(&o.update_time)),
        ],
    );
    let fields = o.fields.as_ref().map(struct_to_map).unwrap_or_default();
    text.push_str(&out.paint(Style::Bold, "Fields:"));
    if fields.is_empty() {
        text.push_str(" -\n");
    } else {
        let pretty = serde_json::to_string_pretty(&Json::Object(fields)).unwrap_or_default();
        text.push('\n');
        for line in pretty.lines() {
            text.push_str(&format!("  {line}\n"));
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

async fn put(
    session: &Session,
    out: &Out,
    env: Option<String>,
    file: &Path,
    request_id: Option<String>,
) -> Result<(), CliError> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?
    };
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
    let count = request.objects.len();
    let response = session.environments().await?.put_objects(session.request(request)).await?.into_inner();
    let ids: Vec<String> = response.objects.iter().map(|o| o.id.clone()).collect();
    note(out, format!("Stored {count} object(s) in {environment} (revision {})", response.revision));
    emit(out, &response, &ids, || {
        let mut table = Table::new(&["TYPE", "ID", "NAME"]);
        for o in &response.objects {
            table.row(vec![o.obj_code.as_str().into(), cell(&o.id, Style::Dim), cell(&o.name, Style::Bold)]);
        }
        table.render(out, "")
    })
}

async fn delete(session: &Session, out: &Out, request: pb::DeleteObjectRequest) -> Result<(), CliError> {
    let environment = request.environment.clone();
    let response = session.environments().await?.delete_object(session.request(request)).await?.into_inner();
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
    let yaml = |t: &str| serde_yaml::from_str::<Json>(t).map_err(|e| format!("not valid YAML: {e}"));
    let json = |t: &str| serde_json::from_str::<Json>(t).map_err(|e| format!("not valid JSON: {e}"));
    let value = match format {
        FileFormat::Json => json(text)?,
        FileFormat::Yaml => yaml(text)?,
        FileFormat::Guess => json(text).or_else(|_| yaml(text))?,
    };
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
    fn bad_files_say_why() {
        assert!(parse_objects_file("[]", FileFormat::Json).unwrap_err().contains("no objects"));
        assert!(parse_objects_file("[{\"objcode\":\"X\"}]", FileFormat::Json).unwrap_err().contains("object #1"));
        assert!(parse_objects_file("{", FileFormat::Json).unwrap_err().contains("JSON"));
        assert!(parse_objects_file("3", FileFormat::Guess).is_err());
    }
}
