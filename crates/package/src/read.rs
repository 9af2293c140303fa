//! GetPackage, ListPackages and GetPackageDefinition: what a caller of the organization
//! may read.
use promotion_core::cursor::{bounded, PageError, PageRequest, Scope, PAGE_BYTES};
use promotion_core::identity::{Identity, Permission};
use promotion_core::package::{DefinitionHeader, Package, Status};
use promotion_store::package::PackageQuery;

use crate::common::{load_visible, require, visible_environment};
use crate::error::{invalid, PackageError, Result};
use crate::state::State;
use crate::validate::validate_package_id;

pub async fn get(state: &State, caller: &Identity, id: &str) -> Result<Package> {
    validate_package_id(id, "id")?;
    let package = load_visible(state, caller, id).await?;
    require(state, caller, &package.source_environment, Permission::PackageRead).await?;
    Ok(package)
}

/// ListPackages filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page_size: i32,
    pub page_token: String,
    pub status: Option<Status>,
    pub source_environment: String,
    pub show_retired: bool,
}

pub fn bad_page_token() -> PackageError {
    invalid("INVALID_PAGE_TOKEN", "page_token", "page_token was not returned by this call")
}

/// A paginated call's page request, its token checked against `scope`.
pub async fn page_request(state: &State, scope: &Scope, size: i32, token: &str) -> Result<PageRequest> {
    let limits = &state.config.limits;
    let tokens = state.page_tokens().await?;
    PageRequest::parse(tokens, scope, size, token, limits.default_page_size, limits.max_page_size).map_err(
        |e| match e {
            PageError::NegativeSize => invalid("INVALID_PAGE_SIZE", "page_size", "page_size must not be negative"),
            PageError::BadToken => bad_page_token(),
        },
    )
}

/// One page of the caller's organization's packages, newest first, at most
/// [`PAGE_BYTES`] of them as `item_size` measures them, and the next page's token.
pub async fn list(
    state: &State,
    caller: &Identity,
    query: ListQuery,
    item_size: impl Fn(&Package) -> usize,
) -> Result<(Vec<Package>, String)> {
    let scope = if query.source_environment.is_empty() { "*" } else { query.source_environment.as_str() };
    if !query.source_environment.is_empty() {
        visible_environment(state, caller, &query.source_environment)?;
    }
    require(state, caller, scope, Permission::PackageRead).await?;
    let tokens = state.page_tokens().await?;
    let scope = Scope::new("ListPackages", &caller.organization)
        .filter(query.status.map(Status::as_str).unwrap_or_default())
        .filter(&query.source_environment)
        .filter(query.show_retired);
    let page = page_request(state, &scope, query.page_size, &query.page_token).await?;
    let filter = PackageQuery {
        organization: caller.organization.clone(),
        status: query.status,
        source_environment: query.source_environment,
        show_retired: query.show_retired,
    };
    let (store, filter) = (state.store.as_ref(), &filter);
    let found = bounded(page.clone(), PAGE_BYTES, item_size, |p| async move { store.list_packages(filter, &p).await })
        .await
        .map_err(|e| match e.kind {
            promotion_store::StoreErrorKind::Corrupt if page.after.is_some() => bad_page_token(),
            _ => e.into(),
        })?;
    Ok((found.items, tokens.token(&scope, found.next.as_ref())))
}

/// The header of one version (0 = current) the caller may read.
pub async fn definition(state: &State, caller: &Identity, id: &str, version: i64) -> Result<DefinitionHeader> {
    if version < 0 {
        return Err(invalid("INVALID_VERSION", "version", "version must be 0 (current) or a version number"));
    }
    let package = get(state, caller, id).await?;
    let current = if package.has_definition { package.version } else { 0 };
    let version = match version {
        0 if current == 0 => return Err(PackageError::DefinitionNotReady { id: package.id, status: package.status }),
        0 => current,
        v if v > current => return Err(PackageError::VersionNotFound { id: package.id, version: v }),
        v => v,
    };
    state
        .store
        .definition_header(&package.id, version)
        .await?
        .ok_or(PackageError::VersionNotFound { id: package.id, version })
}
