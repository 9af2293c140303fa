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

    /// The environment as an installation service's own identity may report on it: one of
    /// its organization's, or one a binding names. One installation service may host
    /// several organizations' environments and is bound to each by name; `*` covers only
    /// its own organization, as for every other caller.
    pub fn reportable(&self, caller: &Identity, id: &str) -> Option<Arc<EnvironmentInfo>> {
        let named = caller.bindings.iter().any(|b| b.environment == id);
        self.environments.get(id).filter(|e| named || e.organization == caller.organization).cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<EnvironmentInfo>> {
        self.environments.get(id).cloned()
    }

    /// The caller's organization's environments, by id.
    pub fn of_organization<'a>(&'a self, organization: &'a str) -> impl Iterator<Item = &'a Arc<EnvironmentInfo>> + 'a {
        self.environments.values().filter(move |e| e.organization == organization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::workfront;
    use crate::config::EnvironmentKind;
    use crate::identity::{Binding, Role};

    fn environment(id: &str, organization: &str) -> (String, Arc<EnvironmentInfo>) {
        let info = EnvironmentInfo {
            id: id.into(),
            display_name: id.into(),
            organization: organization.into(),
            kind: EnvironmentKind::Sandbox,
            catalog: Arc::new(workfront()),
            installation_service: "http://127.0.0.1:9".into(),
        };
        (id.into(), Arc::new(info))
    }

    fn internal(organization: &str, environments: &[&str]) -> Identity {
        let bindings =
            environments.iter().map(|e| Binding { role: Role::Internal, environment: (*e).into() }).collect();
        Identity { subject: "installer".into(), organization: organization.into(), bindings, expires_at: 0 }
    }

    #[test]
    fn a_star_binding_reports_on_its_own_organization_and_a_named_one_on_that_environment() {
        let directory =
            Directory { environments: [environment("qa", "acme"), environment("globex-prod", "globex")].into() };
        let everywhere_in_globex = internal("globex", &["*"]);
        assert!(directory.reportable(&everywhere_in_globex, "globex-prod").is_some());
        assert!(directory.reportable(&everywhere_in_globex, "qa").is_none(), "* is not another organization's");
        let hosting_both = internal("acme", &["qa", "globex-prod"]);
        assert!(directory.reportable(&hosting_both, "globex-prod").is_some());
        assert!(directory.reportable(&hosting_both, "nowhere").is_none());
    }
}
