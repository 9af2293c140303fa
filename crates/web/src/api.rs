//! Seed 001's JSON API under `/environment-promotion/v1/`: each endpoint is exactly one RPC
//! of the package or installation service, called in process through the server's own
//! layers and handlers, so every rule, permission, audit event and error is gRPC's. An
//! endpoint only gathers the request's fields (body, query, path, `Idempotency-Key` and
//! `If-Match` headers), transcodes them, and answers `{"data": ...}` or the error map's JSON.
use http::{Method, StatusCode};
use serde_json::{Map, Value};
use tonic::metadata::{MetadataMap, MetadataValue};

use promotion_serving::http::{with_type, Request, Response, Routes};
use promotion_serving::GrpcHandle;

use crate::call::{self, Outgoing};
use crate::error::{error_response, malformed};
use crate::transcode::{self, field_for, Malformed, Rpc};

/// Where the API lives, as in the seed's URLs.
pub const PREFIX: &str = "/environment-promotion/v1";

/// Which service answers an endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Package,
    Installation,
}

/// How an endpoint builds its request message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    /// The body, the query and the path's `{field}` segments are the request's fields.
    Fields,
    /// PATCH: the body holds the changed fields of the resource `field` names; the
    /// update mask lists them.
    Patch(&'static str),
    /// A server stream whose parts are merged into one answer.
    Stream,
}

struct Endpoint {
    method: &'static str,
    path: &'static str,
    side: Side,
    service: &'static str,
    rpc: &'static str,
    form: Form,
}

const fn on(
    method: &'static str,
    path: &'static str,
    side: Side,
    service: &'static str,
    rpc: &'static str,
) -> Endpoint {
    Endpoint { method, path, side, service, rpc, form: Form::Fields }
}

use Side::{Installation as I, Package as P};

/// Every endpoint: the seed's (token, packages, definition, pre-run, installations) and
/// the promotion requests, tasks, environments and audit trail.
const ENDPOINTS: &[Endpoint] = &[
    on("POST", "/token", P, "AuthService", "IssueToken"),
    on("GET", "/whoami", P, "AuthService", "WhoAmI"),
    on("POST", "/packages", P, "PackageService", "CreatePackage"),
    on("GET", "/packages", P, "PackageService", "ListPackages"),
    on("GET", "/packages/{id}", P, "PackageService", "GetPackage"),
    Endpoint {
        form: Form::Stream,
        ..on("GET", "/packages/{id}/definition", P, "PackageService", "GetPackageDefinition")
    },
    on("PUT", "/packages/{id}", P, "PackageService", "ReplacePackage"),
    Endpoint { form: Form::Patch("package"), ..on("PATCH", "/packages/{id}", P, "PackageService", "UpdatePackage") },
    on("DELETE", "/packages/{id}", P, "PackageService", "DeletePackage"),
    on("GET", "/package-audit-events", P, "AuditService", "ListAuditEvents"),
    on("POST", "/packages/{packageId}/prerun", I, "InstallationService", "CreatePreRun"),
    on("GET", "/prerun/{id}", I, "InstallationService", "GetPreRun"),
    on("POST", "/packages/{packageId}/installations", I, "InstallationService", "CreateInstallation"),
    on("GET", "/packages/{packageId}/installations", I, "InstallationService", "ListInstallations"),
    on("GET", "/installations", I, "InstallationService", "ListInstallations"),
    on("GET", "/installations/{id}", I, "InstallationService", "GetInstallation"),
    on("POST", "/installations/{id}/rollback", I, "InstallationService", "RollbackInstallation"),
    on("GET", "/environments", I, "EnvironmentService", "ListEnvironments"),
    on("GET", "/environments/{id}", I, "EnvironmentService", "GetEnvironment"),
    on("GET", "/environments/{environment}/objects", I, "EnvironmentService", "ListObjects"),
    on("GET", "/environments/{environment}/policy", I, "EnvironmentService", "GetEnvironmentPolicy"),
    Endpoint {
        form: Form::Patch("policy"),
        ..on("PATCH", "/environments/{environment}/policy", I, "EnvironmentService", "UpdateEnvironmentPolicy")
    },
    on("GET", "/environments/{environment}/drift", I, "InstallationService", "GetDrift"),
    on("POST", "/promotion-requests", I, "PromotionService", "RequestPromotion"),
    on("GET", "/promotion-requests", I, "PromotionService", "ListPromotionRequests"),
    on("GET", "/promotion-requests/{id}", I, "PromotionService", "GetPromotionRequest"),
    on("POST", "/promotion-requests/{id}/accept", I, "PromotionService", "AcceptPromotionRequest"),
    on("POST", "/promotion-requests/{id}/reject", I, "PromotionService", "RejectPromotionRequest"),
    on("POST", "/promotion-requests/{id}/cancel", I, "PromotionService", "CancelPromotionRequest"),
    on("GET", "/tasks", I, "PromotionService", "ListPromotionTasks"),
    on("GET", "/audit-events", I, "AuditService", "ListAuditEvents"),
];

/// Parts of a streamed answer merged into one JSON answer at most; larger definitions
/// are for the gRPC stream.
const MAX_STREAM_PARTS: usize = 64;

/// The gRPC services an HTTP port reaches.
#[derive(Clone, Default)]
pub struct Upstreams {
    pub package: Option<GrpcHandle>,
    pub installation: Option<GrpcHandle>,
}

impl Upstreams {
    fn get(&self, side: Side) -> Option<&GrpcHandle> {
        match side {
            Side::Package => self.package.as_ref(),
            Side::Installation => self.installation.as_ref(),
        }
    }
}

/// The API's routes for the services `upstreams` reaches; `max_message_bytes` bounds
/// request bodies and messages as on the gRPC port.
pub fn routes(upstreams: &Upstreams, max_message_bytes: usize) -> Routes {
    let mut routes = Routes::default().max_body_bytes(max_message_bytes);
    for endpoint in ENDPOINTS {
        let Some(handle) = upstreams.get(endpoint.side).cloned() else { continue };
        let rpc = transcode::rpc(endpoint.service, endpoint.rpc);
        let method = Method::from_bytes(endpoint.method.as_bytes()).expect("endpoint methods are HTTP methods");
        routes = routes.route(method, &format!("{PREFIX}{}", endpoint.path), move |req| {
            let (rpc, handle) = (rpc.clone(), handle.clone());
            async move { answer(endpoint, &rpc, &handle, max_message_bytes, req).await }
        });
    }
    routes
}

async fn answer(endpoint: &Endpoint, rpc: &Rpc, handle: &GrpcHandle, max: usize, req: Request) -> Response {
    let fields = match request_fields(endpoint, rpc, &req) {
        Ok(fields) => fields,
        Err(message) => return malformed(message),
    };
    let message = match transcode::encode(fields, &rpc.input) {
        Ok(message) => message,
        Err(Malformed(message)) => {
            return malformed(format!("the request is not a valid {}: {message}", rpc.input.name()))
        }
    };
    let call = Outgoing { path: &rpc.path, message, metadata: metadata(&req), peer: req.peer, max_message_bytes: max };
    let data = match endpoint.form {
        Form::Stream => call::server_streaming(handle, call, MAX_STREAM_PARTS).await.map(|parts| merged(&parts, rpc)),
        Form::Fields | Form::Patch(_) => call::unary(handle, call).await.map(|bytes| data(&bytes, rpc)),
    };
    match data {
        Ok(Ok(body)) => json(StatusCode::OK, &body),
        Ok(Err(e)) => error_response(&tonic::Status::internal(format!("the answer does not decode: {e}"))),
        Err(status) => error_response(&status),
    }
}

/// The request message as JSON: body fields, then query parameters, then path segments
/// (which win), then the headers that carry a field.
fn request_fields(endpoint: &Endpoint, rpc: &Rpc, req: &Request) -> Result<Value, String> {
    let mut fields = body_fields(req)?;
    for (key, value) in req.query() {
        let typed = match field_for(&rpc.input, &key).map(|f| f.kind()) {
            Some(prost_reflect::Kind::Bool) => Value::Bool(value == "true" || value == "1"),
            _ => Value::String(value),
        };
        fields.insert(key, typed);
    }
    if let Form::Patch(resource) = endpoint.form {
        return Ok(patch(resource, fields, req));
    }
    for (name, value) in &req.params {
        fields.insert(name.clone(), Value::String(value.clone()));
    }
    header_fields(&mut fields, &rpc.input, req);
    Ok(Value::Object(fields))
}

fn body_fields(req: &Request) -> Result<Map<String, Value>, String> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    // `curl -d '{...}'` labels JSON as a form: a body that opens like JSON is JSON.
    let form = req.header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let looks_like_json = req.body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{');
    if form && !looks_like_json {
        let text = std::str::from_utf8(&req.body).map_err(|_| "the form is not UTF-8".to_string())?;
        let query = Request::parse_query(text);
        // OAuth clients send grant_type=client_credentials; client credentials are all we issue.
        return Ok(query.into_iter().filter(|(k, _)| k != "grant_type").map(|(k, v)| (k, Value::String(v))).collect());
    }
    match serde_json::from_slice(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body must be a JSON object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

/// `Idempotency-Key` is the request id, `If-Match` the etag, when the body does not say.
fn header_fields(fields: &mut Map<String, Value>, message: &prost_reflect::MessageDescriptor, req: &Request) {
    for (header, field) in [("idempotency-key", "requestId"), ("if-match", "etag")] {
        let Some(value) = req.header(header) else { continue };
        if message.get_field_by_json_name(field).is_some() && !fields.contains_key(field) {
            fields.insert(field.into(), Value::String(value.trim_start_matches("W/").trim_matches('"').to_string()));
        }
    }
}

/// UpdatePackage from a PATCH: `{resource: body + id, updateMask: the body's fields}`.
fn patch(resource: &str, mut body: Map<String, Value>, req: &Request) -> Value {
    let request_id = body.remove("requestId").or_else(|| req.header("idempotency-key").map(|k| k.into()));
    let mask: Vec<String> = body.keys().filter(|k| !matches!(k.as_str(), "id" | "etag")).cloned().collect();
    for (name, value) in &req.params {
        body.insert(name.clone(), Value::String(value.clone()));
    }
    if let (false, Some(etag)) = (body.contains_key("etag"), req.header("if-match")) {
        body.insert("etag".into(), Value::String(etag.trim_start_matches("W/").trim_matches('"').to_string()));
    }
    let mut fields = Map::new();
    fields.insert(resource.into(), Value::Object(body));
    fields
        .insert("updateMask".into(), Value::String(mask.iter().map(|k| seed_to_mask(k)).collect::<Vec<_>>().join(",")));
    if let Some(id) = request_id {
        fields.insert("requestId".into(), id);
    }
    Value::Object(fields)
}

/// A PATCH body key as an update-mask path (the mask names our fields, in camelCase).
fn seed_to_mask(key: &str) -> String {
    match key {
        "packageName" => "name".into(),
        other => other.to_string(),
    }
}

/// The request's credentials and correlation headers, as gRPC metadata.
fn metadata(req: &Request) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for name in ["authorization", "x-request-id", "traceparent"] {
        if let Some(value) = req.header(name).and_then(|v| MetadataValue::try_from(v).ok()) {
            metadata.insert(name, value);
        }
    }
    metadata
}

/// `{"data": ...}`: a list answer's items as the array (its next page token beside it),
/// any other answer as the object.
fn data(bytes: &[u8], rpc: &Rpc) -> Result<Value, String> {
    let mut answer = transcode::decode(bytes, &rpc.output)?;
    let items = list_field(&rpc.output);
    let mut out = Map::new();
    match (items, answer.as_object_mut()) {
        (Some(items), Some(object)) => {
            out.insert("data".into(), object.remove(items.json_name()).unwrap_or(Value::Array(vec![])));
            if let Some(token) = object.remove("nextPageToken").filter(|t| t.as_str().is_some_and(|t| !t.is_empty())) {
                out.insert("nextPageToken".into(), token);
            }
        }
        _ => {
            out.insert("data".into(), answer);
        }
    }
    Ok(Value::Object(out))
}

/// The items of a list answer: its one repeated field, when it also has a page token.
fn list_field(message: &prost_reflect::MessageDescriptor) -> Option<prost_reflect::FieldDescriptor> {
    message.get_field_by_name("next_page_token")?;
    let mut lists = message.fields().filter(|f| f.is_list());
    let items = lists.next()?;
    lists.next().is_none().then_some(items)
}

/// A streamed answer's parts (each one member of a oneof) merged: lists concatenated,
/// other fields taken as they come.
fn merged(parts: &[Vec<u8>], rpc: &Rpc) -> Result<Value, String> {
    let mut merged = Map::new();
    for part in parts {
        let Value::Object(part) = transcode::decode(part, &rpc.output)? else { continue };
        for member in part.into_values() {
            let Value::Object(member) = member else { continue };
            for (key, value) in member {
                match (merged.get_mut(&key), value) {
                    (Some(Value::Array(all)), Value::Array(more)) => all.extend(more),
                    (_, value) => {
                        merged.insert(key, value);
                    }
                }
            }
        }
    }
    Ok(Value::Object(Map::from_iter([("data".to_string(), Value::Object(merged))])))
}

fn json(status: StatusCode, body: &Value) -> Response {
    with_type(status, bytes::Bytes::from(body.to_string()), "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_names_a_real_rpc_and_its_path_fields_exist() {
        for endpoint in ENDPOINTS {
            let rpc = transcode::rpc(endpoint.service, endpoint.rpc);
            for segment in endpoint.path.split('/').filter(|s| s.starts_with('{')) {
                let field = segment.trim_matches(['{', '}']);
                let message = match endpoint.form {
                    Form::Patch(resource) => match rpc.input.get_field_by_name(resource).map(|f| f.kind()) {
                        Some(prost_reflect::Kind::Message(m)) => m,
                        _ => panic!("{} has no message {resource}", endpoint.rpc),
                    },
                    _ => rpc.input.clone(),
                };
                assert!(message.get_field_by_json_name(field).is_some(), "{} has no field {field}", endpoint.rpc);
            }
        }
    }

    #[test]
    fn list_answers_are_recognised_by_their_page_token() {
        assert!(list_field(&transcode::rpc("PackageService", "ListPackages").output).is_some());
        assert!(list_field(&transcode::rpc("PackageService", "GetPackage").output).is_none());
    }
}
