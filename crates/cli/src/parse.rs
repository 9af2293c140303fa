//! Parsing of the compact command-line forms: package roots `TYPE:ID[:NAME]`, install
//! overrides `TYPE:ID=ACTION[:TARGET_OR_ALT_NAME]`, actions, statuses and times.
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};

use promotion_api::v1 as pb;

/// One `--root TYPE:ID[:NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub obj_code: String,
    pub id: String,
    pub name: String,
}

/// An object type code as typed: type codes are upper case (`tmpl` is `TMPL`).
pub fn parse_type(text: &str) -> Result<String, String> {
    let code = text.trim();
    if code.is_empty() {
        return Err("a type code is needed, e.g. TMPL".into());
    }
    Ok(code.to_ascii_uppercase())
}

pub fn parse_root(text: &str) -> Result<Root, String> {
    let mut parts = text.splitn(3, ':');
    let obj_code = parts.next().unwrap_or_default().trim().to_ascii_uppercase();
    let id = parts.next().unwrap_or_default().trim();
    let name = parts.next().unwrap_or_default().trim();
    if obj_code.is_empty() || id.is_empty() {
        return Err(format!("{text:?} is not TYPE:ID[:NAME] (e.g. TMPL:6419b8b9001151ee258921a4f7597bb2)"));
    }
    Ok(Root { obj_code, id: id.to_string(), name: name.to_string() })
}

/// Groups roots by type, keeping the order in which types were first named (the
/// package's display order follows it).
pub fn collections(roots: &[Root]) -> Vec<pb::ObjectCollection> {
    let mut out: Vec<pb::ObjectCollection> = Vec::new();
    for r in roots {
        let entity = pb::EntityRef { id: r.id.clone(), name: r.name.clone() };
        match out.iter_mut().find(|c| c.obj_code == r.obj_code) {
            Some(c) => c.entities.push(entity),
            None => out.push(pb::ObjectCollection { obj_code: r.obj_code.clone(), entities: vec![entity] }),
        }
    }
    out
}

pub fn parse_action(text: &str) -> Result<pb::InstallAction, String> {
    let normalized: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_uppercase();
    let normalized = normalized.strip_prefix("INSTALLACTION").unwrap_or(&normalized);
    Ok(match normalized {
        "CREATE" => pb::InstallAction::Create,
        "USEEXISTING" => pb::InstallAction::Useexisting,
        "OVERWRITING" | "OVERWRITE" => pb::InstallAction::Overwriting,
        "IGNORE" => pb::InstallAction::Ignore,
        "CREATEWITHALTNAME" => pb::InstallAction::Createwithaltname,
        _ => {
            return Err(format!(
                "{text:?} is not an action: CREATE, USEEXISTING, OVERWRITING, IGNORE or CREATEWITHALTNAME"
            ))
        }
    })
}

/// One `--override TYPE:ID=ACTION[:ARG]`: ARG is the target id for USEEXISTING and
/// OVERWRITING, the new name for CREATEWITHALTNAME, and not allowed otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub obj_code: String,
    pub id: String,
    pub entry: pb::TranslationEntry,
}

pub fn parse_override(text: &str) -> Result<Override, String> {
    let shape = || {
        format!("{text:?} is not TYPE:ID=ACTION[:TARGET_ID_OR_ALT_NAME] (e.g. GROUP:0123...ef=USEEXISTING:4567...ab)")
    };
    let (key, value) = text.split_once('=').ok_or_else(shape)?;
    let (obj_code, id) = key.split_once(':').ok_or_else(shape)?;
    let (action_text, arg) = match value.split_once(':') {
        Some((a, arg)) => (a, Some(arg.trim())),
        None => (value, None),
    };
    if obj_code.trim().is_empty() || id.trim().is_empty() {
        return Err(shape());
    }
    let action = parse_action(action_text.trim())?;
    let mut entry = pb::TranslationEntry { action: action as i32, ..Default::default() };
    match (action, arg) {
        (_, Some("")) => return Err(format!("{text:?}: nothing after the action's ':'")),
        (pb::InstallAction::Useexisting | pb::InstallAction::Overwriting, Some(target)) => {
            entry.target_id = target.to_string()
        }
        (pb::InstallAction::Createwithaltname, Some(name)) => entry.alt_name = name.to_string(),
        (pb::InstallAction::Createwithaltname, None) => {
            return Err(format!("{text:?}: CREATEWITHALTNAME needs the new name: ...=CREATEWITHALTNAME:NEW NAME"))
        }
        (pb::InstallAction::Create | pb::InstallAction::Ignore, Some(_)) => {
            return Err(format!("{text:?}: {} takes no target", action_text.trim().to_uppercase()))
        }
        _ => {}
    }
    Ok(Override { obj_code: obj_code.trim().to_ascii_uppercase(), id: id.trim().to_string(), entry })
}

/// The translation-map overrides of a CreateInstallation or AcceptPromotionRequest.
pub fn translation_map(overrides: &[Override]) -> HashMap<String, pb::TypeTranslation> {
    let mut map: HashMap<String, pb::TypeTranslation> = HashMap::new();
    for o in overrides {
        map.entry(o.obj_code.clone()).or_default().entries.insert(o.id.clone(), o.entry.clone());
    }
    map
}

pub fn parse_package_status(text: &str) -> Result<pb::PackageStatus, String> {
    let upper = text.trim().to_uppercase().replace('-', "_");
    let name = upper.strip_prefix("PACKAGE_STATUS_").unwrap_or(&upper);
    pb::PackageStatus::from_str_name(&format!("PACKAGE_STATUS_{name}"))
        .filter(|s| *s != pb::PackageStatus::Unspecified)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a package status: extracting, building, preview, public, retired, extraction_failed"
            )
        })
}

pub fn parse_promotion_status(text: &str) -> Result<pb::PromotionStatus, String> {
    let upper = text.trim().to_uppercase().replace('-', "_");
    let name = upper.strip_prefix("PROMOTION_STATUS_").unwrap_or(&upper);
    let name = if name == "PENDING" { "TO_BE_VALIDATED" } else { name };
    pb::PromotionStatus::from_str_name(&format!("PROMOTION_STATUS_{name}"))
        .filter(|s| *s != pb::PromotionStatus::Unspecified)
        .ok_or_else(|| {
            format!("{text:?} is not a promotion status: to_be_validated (or pending), accepted, rejected, cancelled")
        })
}

/// RFC 3339 (`2026-11-01T09:00:00Z`) or a plain date (midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a time: use RFC 3339 (2026-11-01T09:00:00Z) or a date (2026-11-01)"))
}

/// The short name of an enum value: `PACKAGE_STATUS_PREVIEW` -> `PREVIEW`.
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6419b8b9001151ee258921a4f7597bb2";

    #[test]
    fn roots_take_an_optional_name_that_may_contain_colons() {
        let r = parse_root(&format!("TMPL:{ID}:Onboarding: v2")).unwrap();
        assert_eq!((r.obj_code.as_str(), r.id.as_str(), r.name.as_str()), ("TMPL", ID, "Onboarding: v2"));
        assert_eq!(parse_root(&format!("TMPL:{ID}")).unwrap().name, "");
        assert!(parse_root("TMPL").is_err());
        assert!(parse_root(":abc").is_err());
    }

    #[test]
    fn type_codes_are_case_insensitive() {
        assert_eq!(parse_type("tmpl").unwrap(), "TMPL");
        assert_eq!(parse_root(&format!("tmpl:{ID}")).unwrap().obj_code, "TMPL");
        assert_eq!(parse_override(&format!("group:{ID}=ignore")).unwrap().obj_code, "GROUP");
        assert!(parse_type(" ").is_err());
    }

    #[test]
    fn roots_group_by_type_in_first_seen_order() {
        let roots: Vec<Root> = ["TMPL:a", "PROJ:b", "TMPL:c"].iter().map(|r| parse_root(r).unwrap()).collect();
        let c = collections(&roots);
        assert_eq!(c.iter().map(|c| c.obj_code.as_str()).collect::<Vec<_>>(), ["TMPL", "PROJ"]);
        assert_eq!(c[0].entities.len(), 2);
    }

    #[test]
    fn overrides_carry_their_target_or_alternative_name() {
        let o = parse_override(&format!("GROUP:{ID}=useexisting:abc")).unwrap();
        assert_eq!(o.entry.action, pb::InstallAction::Useexisting as i32);
        assert_eq!(o.entry.target_id, "abc");
        let o = parse_override(&format!("TMPL:{ID}=CREATEWITHALTNAME:Onboarding (copy)")).unwrap();
        assert_eq!(o.entry.alt_name, "Onboarding (copy)");
        let o = parse_override(&format!("TMPL:{ID}=ignore")).unwrap();
        assert_eq!(o.entry.action, pb::InstallAction::Ignore as i32);
        let map = translation_map(&[o]);
        assert!(map["TMPL"].entries.contains_key(ID));
    }

    #[test]
    fn malformed_overrides_are_refused() {
        for bad in [
            "TMPL=CREATE",
            "TMPL:x",
            "TMPL:x=MERGE",
            "TMPL:x=CREATE:y",
            "TMPL:x=CREATEWITHALTNAME",
            "TMPL:x=USEEXISTING:",
        ] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_accept_short_and_full_names() {
        assert_eq!(parse_package_status("public").unwrap(), pb::PackageStatus::Public);
        assert_eq!(parse_package_status("PACKAGE_STATUS_RETIRED").unwrap(), pb::PackageStatus::Retired);
        assert_eq!(parse_package_status("extraction-failed").unwrap(), pb::PackageStatus::ExtractionFailed);
        assert!(parse_package_status("unspecified").is_err());
        assert_eq!(parse_promotion_status("pending").unwrap(), pb::PromotionStatus::ToBeValidated);
    }

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(parse_time("2026-11-01").unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(parse_time("2026-11-01T10:00:00+01:00").unwrap().to_rfc3339(), "2026-11-01T09:00:00+00:00");
        assert!(parse_time("yesterday").is_err());
    }
}
