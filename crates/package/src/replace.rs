//! ReplacePackage (PUT): every editable field at once, with either a re-extraction or a
//! complete definition given whole (validated against the source's catalog).
use chrono::Utc;
use sha2::{Digest, Sha256};

use promotion_core::config::Limits;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::{Identity, Permission};
use promotion_core::objects::ObjectCollection;
use promotion_store::package::{LockKey, PackageRecord};

use crate::common::{check_etag, event, load_visible, require, source_environment, store_definition};
use crate::create::{redefine, Outcome};
use crate::definitions::{self, Built, Content};
use crate::error::{invalid, PackageError, Result};
use crate::idempotency::{repeated, Request};
use crate::state::State;
use crate::validate::{validate_description, validate_name, validate_package_id, validate_request_id, validate_roots};

/// A new definition for ReplacePackage.
#[derive(Debug, Clone)]
pub enum Definition {
    /// Re-extract these roots from the source environment.
    Extract(Vec<ObjectCollection>),
    /// Exactly this content, validated.
    Given(Content),
}

/// ReplacePackage input: every editable field at once.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub name: String,
    pub description: String,
    pub is_private: bool,
    pub definition: Option<Definition>,
    pub etag: String,
    pub request_id: String,
}

impl Replacement {
    fn fingerprint(&self, id: &str) -> String {
        let mut hasher = Sha256::new();
        let head = serde_json::to_vec(&(id, &self.name, &self.description, self.is_private, &self.etag))
            .expect("strings serialise");
        hasher.update(head);
        match &self.definition {
            Some(Definition::Extract(roots)) => hasher.update(serde_json::to_vec(roots).expect("roots serialise")),
            Some(Definition::Given(content)) => {
                for o in &content.objects {
                    hasher.update(serde_json::to_vec(o).expect("objects serialise"));
                }
                for r in &content.external_references {
                    hasher.update(serde_json::to_vec(r).expect("references serialise"));
                }
            }
            None => {}
        }
        hex::encode(hasher.finalize())
    }
}

pub async fn replace(state: &State, caller: &Identity, id: &str, r: Replacement) -> Result<Outcome> {
    validate_package_id(id, "id")?;
    validate_name(&r.name)?;
    validate_description(&r.description)?;
    validate_request_id(&r.request_id)?;
    let request = Request::new(caller, &r.request_id, "ReplacePackage", r.fingerprint(id));
    let lock = state.store.lock(LockKey::Package(id.to_string())).await?;
    let mut package = load_visible(state, caller, id).await?;
    require(state, caller, &package.source_environment, Permission::PackageWrite).await?;
    let env = source_environment(state, &package)?;
    let definition = check_definition(&env, r.definition, state.config.limits.max_package_objects)?;
    if let Some(previous) = repeated(state, request.as_ref()).await? {
        return Ok(Outcome { package: previous, extraction: None });
    }
    check_etag(&package, &r.etag)?;
    if !package.status.allows_redefinition() {
        return Err(PackageError::NotEditable { id: package.id, status: package.status });
    }
    let mut records = Vec::new();
    let extraction = match definition {
        Definition::Extract(roots) => redefine(state, caller, &env, &mut package, roots, &r.request_id, &mut records),
        Definition::Given(content) => {
            let built = build_given(&env, content, &state.config.limits).await?;
            package.object_collections = Vec::new();
            package.warnings = Vec::new();
            store_definition(&mut records, &mut package, built);
            None
        }
    };
    package.name = r.name;
    package.description = r.description;
    package.is_private = r.is_private;
    package.touch(Utc::now());
    let replaced = event(caller, &package, "PACKAGE_REPLACED")
        .request_id(&r.request_id)
        .detail("re_extract", extraction.is_some())
        .detail("version", package.version);
    records.push(PackageRecord::audit(replaced));
    if let Some(req) = &request {
        records.push(req.record(&package));
    }
    records.push(PackageRecord::Package(Box::new(package.clone())));
    state.store.commit(Some(lock), records).await?;
    state.watchers.publish(&package);
    Ok(Outcome { package, extraction })
}

/// A ReplacePackage definition, present and valid against the source's catalog.
fn check_definition(env: &EnvironmentInfo, definition: Option<Definition>, max_objects: usize) -> Result<Definition> {
    let Some(definition) = definition else {
        return Err(invalid(
            "MISSING_FIELD",
            "definition",
            "ReplacePackage needs a new definition: object_collections (re-extract) or entities",
        ));
    };
    match &definition {
        Definition::Extract(roots) => validate_roots(&env.catalog, roots, max_objects)?,
        Definition::Given(content) => {
            definitions::validate(&env.catalog, content).map_err(|rej| PackageError::Invalid {
                reason: rej.reason,
                field: rej.field,
                message: rej.message,
            })?;
            if content.objects.len() > max_objects {
                return Err(PackageError::TooLarge {
                    limit: "max_package_objects",
                    field: "entities.objects".into(),
                    message: format!("a package holds at most {max_objects} objects"),
                });
            }
        }
    }
    Ok(definition)
}

/// Builds a definition given whole, off the async threads (it may be large).
async fn build_given(env: &EnvironmentInfo, mut content: Content, limits: &Limits) -> Result<Built> {
    let (budget, max_bytes) = (limits.stream_chunk_bytes, limits.max_definition_bytes);
    definitions::strip_excluded_fields(&env.catalog, &mut content);
    let catalog = env.catalog.clone();
    tokio::task::spawn_blocking(move || definitions::build_bounded(&catalog, &[], content, budget, max_bytes))
        .await
        .map_err(|e| {
            PackageError::Store(promotion_store::StoreError::engine(format!("building the definition failed: {e}")))
        })?
        .map_err(|message| invalid("OBJECT_TOO_LARGE", "entities", message))
}
