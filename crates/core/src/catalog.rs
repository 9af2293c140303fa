//! Catalogs: the object types an environment holds and the promotion rules of each type,
//! including the built-in `workfront` (seed 001) and `apim` (seed 000) catalogs.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::objects::is_valid_obj_code;

/// Promotion rules of one object type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectType {
    pub obj_code: String,
    pub display_name: String,
    /// Can be a package root (a "promotable object").
    #[serde(default)]
    pub root: bool,
    /// Types a package rooted here carries (the seed's "Included sub-objects").
    #[serde(default)]
    pub includes: Vec<String>,
    /// For owned sub-objects: the types that may own them. Empty for top-level types.
    #[serde(default)]
    pub parent_types: Vec<String>,
    #[serde(default)]
    pub unique_names: bool,
    /// Fields stripped from every package.
    #[serde(default)]
    pub excluded_fields: Vec<String>,
    /// Lower installs first; referenced types rank below the types referring to them.
    #[serde(default)]
    pub install_rank: i32,
    /// Objects of this type never leave their environment; references to them are dropped.
    #[serde(default)]
    pub never_carried: bool,
}

/// A named set of object types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub types: Vec<ObjectType>,
}

impl Catalog {
    /// Checks requested package roots without reading an environment: known root types,
    /// at least one entity each, well-formed ids.
    pub fn validate_roots(&self, roots: &[crate::objects::ObjectCollection]) -> Result<(), crate::Invalid> {
        use crate::objects::is_valid_object_id;
        use crate::Invalid;
        for (i, c) in roots.iter().enumerate() {
            let field = format!("object_collections[{i}].obj_code");
            match self.get(&c.obj_code) {
                None => {
                    return Err(Invalid::new(
                        "UNKNOWN_TYPE",
                        field,
                        format!("type {:?} is not in catalog {}", c.obj_code, self.name),
                    ))
                }
                Some(t) if !t.root => {
                    return Err(Invalid::new(
                        "NOT_A_ROOT_TYPE",
                        field,
                        format!("{} cannot be a package root; promote its owner instead", c.obj_code),
                    ))
                }
                Some(_) => {}
            }
            if c.entities.is_empty() {
                return Err(Invalid::new(
                    "EMPTY_COLLECTION",
                    format!("object_collections[{i}].entities"),
                    format!("collection {} names no entity", c.obj_code),
                ));
            }
            for (j, e) in c.entities.iter().enumerate() {
                if !is_valid_object_id(&e.id) {
                    return Err(Invalid::new(
                        "INVALID_ID",
                        format!("object_collections[{i}].entities[{j}].id"),
                        format!(
                            "id {:?} is not 32 lowercase hex characters",
                            e.id.chars().take(80).collect::<String>()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, obj_code: &str) -> Option<&ObjectType> {
        self.types.iter().find(|t| t.obj_code == obj_code)
    }

    pub fn is_root(&self, obj_code: &str) -> bool {
        self.get(obj_code).is_some_and(|t| t.root)
    }

    /// The given types in install order (rank, then code for a stable result).
    pub fn install_order<'a>(&self, codes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut ranked: Vec<(i32, &str)> = codes
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|c| (self.get(c).map_or(i32::MAX, |t| t.install_rank), c))
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(_, c)| c.to_string()).collect()
    }

    /// Checks the catalog is self-consistent: codes well formed and unique, every named
    /// type exists, roots include themselves, owned types never are never_carried roots.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("catalog name is empty".into());
        }
        let mut seen = BTreeSet::new();
        for t in &self.types {
            if !is_valid_obj_code(&t.obj_code) {
                return Err(format!("type code {:?} is not 2-16 uppercase letters/digits", t.obj_code));
            }
            if !seen.insert(t.obj_code.as_str()) {
                return Err(format!("type {} is defined twice", t.obj_code));
            }
        }
        for t in &self.types {
            for other in t.includes.iter().chain(&t.parent_types) {
                if !seen.contains(other.as_str()) {
                    return Err(format!("type {} names unknown type {other}", t.obj_code));
                }
            }
            if t.root && !t.includes.contains(&t.obj_code) {
                return Err(format!("root type {} must include itself", t.obj_code));
            }
            if t.root && t.never_carried {
                return Err(format!("type {} cannot be both a root and never carried", t.obj_code));
            }
            if !t.root && !t.includes.is_empty() {
                return Err(format!("type {} is not a root but has includes", t.obj_code));
            }
        }
        Ok(())
    }

    /// Reads a catalog file (TOML or JSON, same schema as the built-ins) and validates it.
    pub fn load_file(path: &std::path::Path) -> Result<Catalog, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read catalog {}: {e}", path.display()))?;
        let catalog: Catalog = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        catalog.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(catalog)
    }
}

/// The catalogs a deployment knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalogs {
    by_name: HashMap<String, std::sync::Arc<Catalog>>,
}

impl Catalogs {
    /// The two built-in catalogs.
    pub fn builtin() -> Self {
        let mut catalogs = Self::default();
        catalogs.add(workfront()).expect("workfront catalog is valid");
        catalogs.add(apim()).expect("apim catalog is valid");
        catalogs
    }

    pub fn add(&mut self, catalog: Catalog) -> Result<(), String> {
        catalog.validate()?;
        if self.by_name.contains_key(&catalog.name) {
            return Err(format!("catalog {} is defined twice", catalog.name));
        }
        self.by_name.insert(catalog.name.clone(), std::sync::Arc::new(catalog));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<Catalog>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// Compact description of a type used to build the built-in tables.
struct Spec {
    code: &'static str,
    name: &'static str,
    rank: i32,
    unique: bool,
    parents: &'static [&'static str],
    /// Included types for a root; `None` for a type that is not promotable on its own.
    includes: Option<&'static [&'static str]>,
}

const fn root(
    code: &'static str,
    name: &'static str,
    rank: i32,
    unique: bool,
    includes: &'static [&'static str],
) -> Spec {
    Spec { code, name, rank, unique, parents: &[], includes: Some(includes) }
}

const fn owned(code: &'static str, name: &'static str, rank: i32, parents: &'static [&'static str]) -> Spec {
    Spec { code, name, rank, unique: false, parents, includes: None }
}

/// Every type's included set is written out in full, from the seed 001 tables; sub-object
/// types are the ones the tables list under a root without being roots themselves.
const WORKFRONT: &[Spec] = &[
    // Organization objects first: almost everything references them.
    // Groups nest (sub-groups up to 5 levels): a group may be owned by another group.
    Spec {
        parents: &["GROUP"],
        ..root("GROUP", "Group", 10, true, &["GROUP", "CTGY", "CTGYPA", "PARAM", "PGRP", "POPT", "CTGYDL"])
    },
    root("ROLE", "Role", 20, true, &["ROLE"]),
    root("TEAM", "Team", 30, true, &["TEAM", "GROUP"]),
    root("HOURT", "Hour Type", 40, true, &["HOURT"]),
    root("EXPTYP", "Expense Type", 41, true, &["EXPTYP"]),
    root("RSKTYP", "Risk Type", 42, true, &["RSKTYP"]),
    root("RSPL", "Resource Pool", 43, true, &["RSPL"]),
    // Custom data.
    root("PGRP", "Parameter Group", 50, true, &["PGRP"]),
    root("PARAM", "Parameter", 51, true, &["PARAM", "POPT"]),
    owned("POPT", "Parameter Option", 52, &["PARAM"]),
    root("CTGY", "Category", 53, true, &["CTGY", "CTGYPA", "PARAM", "PGRP", "POPT", "CTGYDL", "GROUP"]),
    owned("CTGYPA", "Category Parameter", 54, &["CTGY"]),
    owned("CTGYDL", "Category Display Logic", 55, &["CTGY"]),
    root("CMPY", "Company", 60, true, &["CMPY", "RTOVR", "CTGY", "CTGYPA", "PARAM", "PGRP", "POPT", "CTGYDL", "GROUP"]),
    owned("RTOVR", "Override Rate", 61, &["CMPY"]),
    root(
        "PORT",
        "Portfolio",
        62,
        true,
        &["PORT", "PRGM", "GROUP", "CTGY", "CTGYPA", "PARAM", "PGRP", "POPT", "CTGYDL"],
    ),
    root("PRGM", "Program", 63, true, &["PRGM", "PORT", "GROUP", "CTGY", "CTGYPA", "PARAM", "PGRP", "POPT", "CTGYDL"]),
    // Other configuration objects.
    root("SCHED", "Schedule", 70, true, &["SCHED", "NONWKD", "GROUP"]),
    owned("NONWKD", "Non Work Day", 71, &["SCHED"]),
    root("ARVPRC", "Approval Process", 72, true, &["ARVPRC", "ARVPTH", "ARVSTP", "SPAPVR", "ROLE", "TEAM", "GROUP"]),
    owned("ARVPTH", "Approval Path", 73, &["ARVPRC"]),
    owned("ARVSTP", "Approval Step", 74, &["ARVPTH"]),
    owned("SPAPVR", "Step Approver", 75, &["ARVSTP"]),
    root("MPATH", "Milestone Path", 76, true, &["MPATH", "MILE"]),
    owned("MILE", "Milestone", 77, &["MPATH"]),
    root("TSPRO", "Timesheet Profile", 78, true, &["TSPRO", "HOURT"]),
    // Reporting objects.
    root("UIFT", "Filter", 80, false, &["UIFT", "PARAM"]),
    root("UIGB", "Grouping", 81, false, &["UIGB", "PARAM"]),
    root("UIVW", "View", 82, false, &["UIVW", "PARAM"]),
    root("PTLSEC", "Report", 83, false, &["PTLSEC", "UIFT", "UIGB", "UIVW", "PARAM"]),
    root("EXTSEC", "External Page", 84, false, &["EXTSEC"]),
    root("CALEND", "Calendar", 85, false, &["CALEND", "CALSEC"]),
    owned("CALSEC", "Calendar Section", 86, &["CALEND"]),
    root(
        "PTLTAB",
        "Dashboard",
        87,
        false,
        &["PTLTAB", "CALEND", "CALSEC", "EXTSEC", "PTLSEC", "UIFT", "UIGB", "UIVW", "PARAM"],
    ),
    root(
        "UITMPL",
        "Layout Template",
        88,
        false,
        &["UITMPL", "PTLTAB", "CALEND", "CALSEC", "EXTSEC", "PTLSEC", "UIFT", "UIGB", "UIVW", "PARAM"],
    ),
    // Work objects: they reference everything above.
    root("TMPL", "Template", 100, false, WORK_INCLUDES_TMPL),
    owned("TTSK", "Template Task", 101, &["TMPL"]),
    owned("TASSGN", "Template Task Assignment", 102, &["TTSK"]),
    owned("TPRED", "Template Task Predecessor", 103, &["TTSK"]),
    root("PROJ", "Project", 110, false, WORK_INCLUDES_PROJ),
    owned("TASK", "Task", 111, &["PROJ"]),
    owned("ASSGN", "Assignment", 112, &["TASK"]),
    owned("PRED", "Predecessor", 113, &["TASK"]),
    // Queue setup belongs to a project or template (request queues).
    owned("QUED", "Queue Definition", 120, &["PROJ", "TMPL"]),
    owned("QUTGRP", "Queue Topic Group", 121, &["QUED"]),
    owned("QUET", "Queue Topic", 122, &["QUED", "QUTGRP"]),
    owned("RRUL", "Routing Rule", 123, &["QUED"]),
];

// The seed lists the same shared sub-objects under Project and Template.
const WORK_INCLUDES_TMPL: &[&str] = &[
    "TMPL", "TTSK", "TASSGN", "TPRED", "CMPY", "RTOVR", "GROUP", "ROLE", "TEAM", "ARVPRC", "ARVPTH", "ARVSTP",
    "SPAPVR", "SCHED", "NONWKD", "QUED", "QUTGRP", "QUET", "RRUL", "MPATH", "MILE", "HOURT", "RSPL", "CTGY", "CTGYPA",
    "PARAM", "PGRP", "POPT", "CTGYDL",
];
const WORK_INCLUDES_PROJ: &[&str] = &[
    "PROJ", "TASK", "ASSGN", "PRED", "CMPY", "RTOVR", "GROUP", "ROLE", "TEAM", "ARVPRC", "ARVPTH", "ARVSTP", "SPAPVR",
    "SCHED", "NONWKD", "QUED", "QUTGRP", "QUET", "RRUL", "MPATH", "MILE", "HOURT", "RSPL", "CTGY", "CTGYPA", "PARAM",
    "PGRP", "POPT", "CTGYDL",
];

fn build(name: &str, description: &str, specs: &[Spec]) -> Catalog {
    let types = specs
        .iter()
        .map(|s| ObjectType {
            obj_code: s.code.into(),
            display_name: s.name.into(),
            root: s.includes.is_some(),
            includes: s.includes.unwrap_or(&[]).iter().map(|c| c.to_string()).collect(),
            parent_types: s.parents.iter().map(|c| c.to_string()).collect(),
            unique_names: s.unique,
            excluded_fields: Vec::new(),
            install_rank: s.rank,
            never_carried: false,
        })
        .collect();
    Catalog { name: name.into(), description: description.into(), types }
}

/// The seed 001 catalog: 27 promotable types and their included sub-objects.
pub fn workfront() -> Catalog {
    build("workfront", "Workfront environment promotion: the 27 promotable types of seed 001", WORKFRONT)
}

/// The seed 000 catalog: APIs with plans and pages; members and groups stay behind.
pub fn apim() -> Catalog {
    let mut catalog = build(
        "apim",
        "API management: APIs with their plans and pages (seed 000)",
        &[
            Spec { code: "MEMBER", name: "Member", rank: 5, unique: true, parents: &[], includes: None },
            Spec { code: "GROUP", name: "Group", rank: 6, unique: true, parents: &[], includes: None },
            root("API", "API", 10, false, &["API", "PLAN", "PAGE"]),
            owned("PLAN", "Plan", 20, &["API"]),
            owned("PAGE", "Page", 21, &["API"]),
        ],
    );
    for t in &mut catalog.types {
        match t.obj_code.as_str() {
            "MEMBER" | "GROUP" => t.never_carried = true,
            "API" => t.excluded_fields = vec!["members".into(), "groups".into()],
            _ => {}
        }
    }
    catalog
}

/// Object counts per type, sorted by code (used by environments and packages).
pub type TypeCounts = BTreeMap<String, i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workfront_has_the_27_promotable_types_of_seed_001() {
        let catalog = workfront();
        catalog.validate().unwrap();
        let roots: BTreeSet<_> = catalog.types.iter().filter(|t| t.root).map(|t| t.obj_code.as_str()).collect();
        let expected: BTreeSet<_> = "PROJ TMPL UITMPL PTLTAB CALEND EXTSEC PTLSEC UIFT UIGB UIVW CTGY PARAM PGRP GROUP ROLE TEAM CMPY PORT PRGM ARVPRC SCHED MPATH TSPRO HOURT EXPTYP RSKTYP RSPL"
            .split(' ')
            .collect();
        assert_eq!(roots, expected);
        for sub in "TASK ASSGN PRED RTOVR ARVPTH ARVSTP SPAPVR NONWKD QUED QUTGRP QUET RRUL MILE TTSK TASSGN TPRED CTGYPA POPT CTGYDL CALSEC".split(' ') {
            let t = catalog.get(sub).unwrap_or_else(|| panic!("{sub} missing"));
            assert!(!t.root && !t.parent_types.is_empty(), "{sub} is an owned sub-object");
            assert!(t.parent_types.iter().all(|p| catalog.get(p).unwrap().install_rank < t.install_rank));
        }
    }

    #[test]
    fn template_includes_the_seed_rows() {
        let catalog = workfront();
        let tmpl = catalog.get("TMPL").unwrap();
        for code in "TMPL TTSK TASSGN TPRED CMPY RTOVR GROUP ROLE TEAM ARVPRC ARVPTH ARVSTP SPAPVR SCHED NONWKD QUED QUTGRP QUET RRUL MPATH MILE HOURT RSPL CTGY CTGYPA PARAM PGRP POPT CTGYDL".split(' ') {
            assert!(tmpl.includes.iter().any(|c| c == code), "TMPL should include {code}");
        }
        assert!(!tmpl.includes.iter().any(|c| c == "PROJ"));
        assert_eq!(catalog.get("ROLE").unwrap().includes, vec!["ROLE"]);
    }

    #[test]
    fn unique_names_follow_the_seed_faq() {
        let catalog = workfront();
        assert!(catalog.get("GROUP").unwrap().unique_names);
        for code in ["TMPL", "PROJ", "UIVW", "UIFT", "UIGB", "PTLSEC", "PTLTAB"] {
            assert!(!catalog.get(code).unwrap().unique_names, "{code} names are not unique");
        }
    }

    #[test]
    fn install_order_puts_referenced_types_first() {
        let catalog = workfront();
        let order = catalog.install_order(["TTSK", "TMPL", "GROUP", "ROLE", "TASSGN"]);
        assert_eq!(order, vec!["GROUP", "ROLE", "TMPL", "TTSK", "TASSGN"]);
        for t in &catalog.types {
            for parent in &t.parent_types {
                assert!(catalog.get(parent).unwrap().install_rank <= t.install_rank, "{parent} before {}", t.obj_code);
            }
        }
    }

    #[test]
    fn apim_never_carries_members_and_groups() {
        let catalog = apim();
        catalog.validate().unwrap();
        assert!(catalog.get("MEMBER").unwrap().never_carried);
        assert!(catalog.get("GROUP").unwrap().never_carried);
        let api = catalog.get("API").unwrap();
        assert_eq!(api.includes, vec!["API", "PLAN", "PAGE"]);
        assert_eq!(api.excluded_fields, vec!["members", "groups"]);
    }

    #[test]
    fn invalid_catalogs_are_rejected() {
        let mut catalog = apim();
        catalog.types[2].includes.push("NOPE".into());
        assert!(catalog.validate().unwrap_err().contains("NOPE"));
        let mut catalog = apim();
        catalog.types.push(catalog.types[0].clone());
        assert!(catalog.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn catalog_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apim.toml");
        std::fs::write(&path, toml::to_string(&apim()).unwrap()).unwrap();
        assert_eq!(Catalog::load_file(&path).unwrap(), apim());
    }
}
