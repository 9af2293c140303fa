//! Reading the package to plan or install, on the caller's behalf, and the rule of which
//! package status installs into which environment kind.
use promotion_core::config::EnvironmentKind;
use promotion_core::directory::EnvironmentInfo;
use promotion_core::identity::Credentials;
use promotion_core::package::Status;

use crate::error::InstallError;
use crate::package_source::PackageInfo;
use crate::plan::PackageContent;
use crate::state::State;

/// PREVIEW installs into sandboxes only, PUBLIC anywhere, nothing else anywhere.
pub fn installable(status: Status, kind: EnvironmentKind) -> bool {
    matches!((status, kind), (Status::Public, _) | (Status::Preview, EnvironmentKind::Sandbox))
}

pub fn check_installable(info: &PackageInfo, dest: &EnvironmentInfo) -> Result<(), InstallError> {
    if info.organization != dest.organization {
        return Err(InstallError::CrossOrganization);
    }
    if !installable(info.status, dest.kind) {
        return Err(InstallError::NotInstallable { status: info.status.as_str(), kind: dest.kind });
    }
    Ok(())
}

pub async fn info(state: &State, credentials: &Credentials, package_id: &str) -> Result<PackageInfo, InstallError> {
    let source = state.packages.as_ref().ok_or(InstallError::NoPackageService)?;
    Ok(source.info(package_id, credentials).await?)
}

/// The content of one version of a package.
pub async fn content(
    state: &State,
    credentials: &Credentials,
    package_id: &str,
    version: i64,
) -> Result<PackageContent, InstallError> {
    let source = state.packages.as_ref().ok_or(InstallError::NoPackageService)?;
    Ok(source.content(package_id, version, credentials).await?)
}

/// The package's header and content (version 0: the current one), if it may go to `dest`.
pub async fn fetch(
    state: &State,
    credentials: &Credentials,
    dest: &EnvironmentInfo,
    package_id: &str,
    version: i64,
) -> Result<(PackageInfo, PackageContent), InstallError> {
    let source = state.packages.as_ref().ok_or(InstallError::NoPackageService)?;
    let info = source.info(package_id, credentials).await?;
    check_installable(&info, dest)?;
    let version = if version == 0 { info.version } else { version };
    let content = source.content(package_id, version, credentials).await?;
    Ok((info, content))
}
