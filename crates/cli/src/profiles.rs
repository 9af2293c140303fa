//! Named profiles: each keeps its own servers, its own cached token and its own cache of
//! where the environment directory says each environment is hosted, in one private file
//! under the configuration directory; `config.json` there names the current profile.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::CliError;

pub const DEFAULT_PROFILE: &str = "default";
const SETTINGS_FILE: &str = "config.json";
const PROFILES_DIR: &str = "profiles";
/// Where the token of the default profile lived before there were profiles.
const LEGACY_TOKEN_FILE: &str = "token.json";

/// What `promotion login` leaves behind for the other commands. Never holds the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    pub expire_time: Option<DateTime<Utc>>,
    pub subject: String,
    pub organization: String,
}

/// One profile's file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<CachedToken>,
    /// Environment id -> address of the installation service hosting it, as the directory
    /// of `directory_server` said.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub directory_server: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Settings {
    #[serde(default)]
    current_profile: Option<String>,
}

/// The configuration directory: profiles and the name of the current one.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// `--config-dir` / PROMOTION_CONFIG_DIR, else `$XDG_CONFIG_HOME/promotion`, else
/// `~/.config/promotion`.
pub fn config_dir(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = non_empty("XDG_CONFIG_HOME") {
        return Ok(xdg.join("promotion"));
    }
    non_empty("HOME").map(|home| home.join(".config").join("promotion")).ok_or_else(|| {
        CliError::usage("cannot tell where to keep profiles: set PROMOTION_CONFIG_DIR, XDG_CONFIG_HOME or HOME")
    })
}

/// Profile names are file names: letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), CliError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{name:?} is not a profile name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn path_of(&self, profile: &str) -> PathBuf {
        self.dir.join(PROFILES_DIR).join(format!("{profile}.json"))
    }

    /// The profile `promotion config use-profile` chose, else `default`.
    pub fn current(&self) -> Result<String, CliError> {
        let settings: Settings = read_json(&self.dir.join(SETTINGS_FILE))?.unwrap_or_default();
        Ok(settings.current_profile.unwrap_or_else(|| DEFAULT_PROFILE.into()))
    }

    pub fn set_current(&self, profile: &str) -> Result<(), CliError> {
        check_name(profile)?;
        let settings = Settings { current_profile: Some(profile.to_string()) };
        write_private(&self.dir, &self.dir.join(SETTINGS_FILE), &settings)
    }

    /// The profile's file; the default profile also takes over a token cached before
    /// profiles existed.
    pub fn load(&self, profile: &str) -> Result<Option<Profile>, CliError> {
        check_name(profile)?;
        if let Some(p) = read_json::<Profile>(&self.path_of(profile))? {
            return Ok(Some(p));
        }
        if profile == DEFAULT_PROFILE {
            #[derive(Deserialize)]
            struct Legacy {
                #[serde(flatten)]
                token: CachedToken,
                package_server: Option<String>,
                installation_server: Option<String>,
            }
            if let Some(l) = read_json::<Legacy>(&self.dir.join(LEGACY_TOKEN_FILE))? {
                return Ok(Some(Profile {
                    package_server: l.package_server,
                    installation_server: l.installation_server,
                    token: Some(l.token),
                    ..Default::default()
                }));
            }
        }
        Ok(None)
    }

    /// Writes the profile readable by its owner only (0600, directories 0700), replacing
    /// the file in one rename so that a reader never sees half of it.
    pub fn save(&self, profile: &str, data: &Profile) -> Result<PathBuf, CliError> {
        check_name(profile)?;
        let path = self.path_of(profile);
        write_private(&self.dir.join(PROFILES_DIR), &path, data)?;
        if profile == DEFAULT_PROFILE {
            // The legacy file would otherwise come back after a logout.
            let _ = std::fs::remove_file(self.dir.join(LEGACY_TOKEN_FILE));
        }
        Ok(path)
    }

    /// Every profile with a file, sorted.
    pub fn names(&self) -> Result<Vec<String>, CliError> {
        let mut names = Vec::new();
        match std::fs::read_dir(self.dir.join(PROFILES_DIR)) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                            names.push(stem.to_string());
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::failed(format!("cannot list {}: {e}", self.dir.display()))),
        }
        if !names.iter().any(|n| n == DEFAULT_PROFILE) && self.dir.join(LEGACY_TOKEN_FILE).exists() {
            names.push(DEFAULT_PROFILE.into());
        }
        names.sort();
        Ok(names)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::failed(format!("{} is not a profile file ({e}); remove it or log in again", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::failed(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_private<T: Serialize>(dir: &Path, path: &Path, value: &T) -> Result<(), CliError> {
    let io = |what: &str, p: &Path, e: std::io::Error| CliError::failed(format!("cannot {what} {}: {e}", p.display()));
    create_private_dir(dir).map_err(|e| io("create", dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(value).map_err(|e| CliError::failed(e.to_string()))?;
    write_private_file(&tmp, &body).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replace", path, e))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(subject: &str) -> CachedToken {
        CachedToken {
            access_token: "t".into(),
            expire_time: None,
            subject: subject.into(),
            organization: "acme".into(),
        }
    }

    #[test]
    fn profiles_are_private_files_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("a/b"));
        assert_eq!(store.current().unwrap(), DEFAULT_PROFILE);
        assert!(store.load("staging").unwrap().is_none());
        let path = store.save("staging", &Profile { token: Some(token("alice")), ..Default::default() }).unwrap();
        store.save(DEFAULT_PROFILE, &Profile { token: Some(token("bob")), ..Default::default() }).unwrap();
        assert_eq!(store.load("staging").unwrap().unwrap().token.unwrap().subject, "alice");
        assert_eq!(store.load(DEFAULT_PROFILE).unwrap().unwrap().token.unwrap().subject, "bob");
        store.set_current("staging").unwrap();
        assert_eq!(store.current().unwrap(), "staging");
        assert_eq!(store.names().unwrap(), ["default", "staging"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(check_name("../etc").is_err() && check_name(".hidden").is_err() && check_name("prod-eu_1").is_ok());
    }

    #[test]
    fn a_token_cached_before_profiles_is_the_default_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = r#"{"access_token":"t","expire_time":null,"subject":"alice","organization":"acme",
            "package_server":"http://p:1","installation_server":"http://i:2"}"#;
        std::fs::write(dir.path().join("token.json"), legacy).unwrap();
        let store = Store::new(dir.path().to_path_buf());
        let p = store.load(DEFAULT_PROFILE).unwrap().unwrap();
        assert_eq!((p.token.unwrap().subject.as_str(), p.package_server.as_deref()), ("alice", Some("http://p:1")));
    }
}
