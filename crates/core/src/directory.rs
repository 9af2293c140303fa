//! The environment directory: which organization owns each environment, its kind, its
//! catalog and the installation service hosting it, with organization isolation.
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::{Catalog, Catalogs};
use crate::config::{Config, EnvironmentKind};
use crate::identity::Identity;

#[derive(Debug, Clone)]
pub struct EnvironmentInfo {
    pub id: String,
    pub display_name: String,
    pub organization: String,
    pub kind: EnvironmentKind,
    pub catalog: Arc<Catalog>,
    pub installation_service: String,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    environments: BTreeMap<String, Arc<EnvironmentInfo>>,
}

impl Directory {
    /// Builds the directory from a configuration already validated with its catalogs.
    pub fn from_config(config: &Config, catalogs: &Catalogs) -> Directory {
        let environments = config
            .environments
            .iter()
            .filter_map(|e| {
                let catalog = catalogs.get(config.catalog_of(e)?)?;
                Some((
                    e.id.clone(),
                    Arc::new(EnvironmentInfo {
                        id: e.id.clone(),
                        display_name: if e.display_name.is_empty() { e.id.clone() } else { e.display_name.clone() },
                        organization: e.organization.clone(),
                        kind: e.kind,
                        catalog,
                        installation_service: e.installation_service.clone(),
                    }),
                ))
            })
            .collect();
        Directory { environments }
    }

    /// The environment as the caller may see it: another organization's environment is
    /// indistinguishable from one that does not exist.
    pub fn visible(&self, caller: &Identity, id: &str) -> Option<Arc<EnvironmentInfo>> {
        self.environments.get(id).filter(|e| e.organization == caller.organization).cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<EnvironmentInfo>> {
        self.environments.get(id).cloned()
    }

    /// The caller's organization's environments, by id.
    pub fn of_organization<'a>(&'a self, organization: &'a str) -> impl Iterator<Item = &'a Arc<EnvironmentInfo>> + 'a {
        self.environments.values().filter(move |e| e.organization == organization)
    }
}
