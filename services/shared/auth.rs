//! Identity: roles and permissions, signed bearer tokens (JWT, HS256) and client secret
//! hashes.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Roles bound per environment (or "*").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Publisher,
    Deployer,
    Editor,
    Admin,
    /// Installation services' own credentials: only RecordInstallation.
    Internal,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Deployer => "deployer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }

    /// What the role grants on the environments it is bound to.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        let viewer = matches!(p, PackageRead | EnvironmentRead | InstallationRead);
        match self {
            Role::Viewer => viewer,
            Role::Publisher => viewer || matches!(p, PackageWrite | PromotionRequest),
            Role::Deployer => viewer || matches!(p, InstallationWrite | PromotionApprove),
            Role::Editor => viewer || p == EnvironmentWrite,
            Role::Admin => p != RecordInstallation,
            Role::Internal => p == RecordInstallation,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    PackageRead,
    PackageWrite,
    EnvironmentRead,
    EnvironmentWrite,
    InstallationRead,
    InstallationWrite,
    PromotionRequest,
    PromotionApprove,
    AuditRead,
    RecordInstallation,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            PackageRead => "package.read",
            PackageWrite => "package.write",
            EnvironmentRead => "environment.read",
            EnvironmentWrite => "environment.write",
            InstallationRead => "installation.read",
            InstallationWrite => "installation.write",
            PromotionRequest => "promotion.request",
            PromotionApprove => "promotion.approve",
            AuditRead => "audit.read",
            RecordInstallation => "installation.record",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub role: Role,
    pub environment: String,
}

/// Who is calling: what a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub subject: String,
    pub organization: String,
    pub bindings: Vec<Binding>,
    pub expires_at: i64,
}

impl Identity {
    /// Whether the caller holds `p` on environment `env` of its own organization. The
    /// caller must already have checked that `env` belongs to that organization.
    pub fn allows(&self, p: Permission, env: &str) -> bool {
        // Packages are readable organization-wide: any binding grants package.read.
        if p == Permission::PackageRead && self.bindings.iter().any(|b| b.role != Role::Internal) {
            return true;
        }
        self.bindings.iter().any(|b| (b.environment == "*" || b.environment == env) && b.role.grants(p))
    }

    /// Whether the caller holds `p` on every environment of the organization.
    pub fn allows_everywhere(&self, p: Permission) -> bool {
        self.bindings.iter().any(|b| b.environment == "*" && b.role.grants(p))
    }

    pub fn expire_time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.expires_at, 0).single().unwrap_or_default()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    org: String,
    roles: Vec<Binding>,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongIssuer,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "the bearer token is malformed",
            TokenError::BadSignature => "the bearer token's signature is not valid",
            TokenError::Expired => "the bearer token has expired",
            TokenError::WrongIssuer => "the bearer token was issued by someone else",
        })
    }
}

/// Signs and verifies HS256 JWTs with the deployment's shared key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
    issuer: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenSigner {
    pub fn new(key: &[u8], issuer: &str) -> Self {
        Self { key: key.to_vec(), issuer: issuer.into() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    pub fn issue(&self, identity: &Identity, now: DateTime<Utc>) -> String {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: identity.subject.clone(),
            org: identity.organization.clone(),
            roles: identity.bindings.clone(),
            iat: now.timestamp(),
            exp: identity.expires_at,
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let signing_input = format!("{}.{}", B64.encode(JWT_HEADER), B64.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Checks signature (constant time), issuer and expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Identity, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let header = B64.decode(header).map_err(|_| TokenError::Malformed)?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Malformed);
        }
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(Identity { subject: claims.sub, organization: claims.org, bindings: claims.roles, expires_at: claims.exp })
    }
}

/// An argon2id PHC string for a client secret (what configuration stores).
pub fn hash_secret(secret: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters succeeds")
        .to_string()
}

/// Constant-time check of a secret against its stored hash.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|hash| argon2::Argon2::default().verify_password(secret.as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(exp: i64) -> Identity {
        Identity {
            subject: "alice".into(),
            organization: "acme".into(),
            bindings: vec![Binding { role: Role::Publisher, environment: "dev".into() }],
            expires_at: exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef", "promotion");
        let now = Utc::now();
        let token = signer.issue(&alice(now.timestamp() + 60), now);
        assert_eq!(signer.verify(&token, now).unwrap(), alice(now.timestamp() + 60));
        let other = TokenSigner::new(b"another key another key another k", "promotion");
        assert_eq!(other.verify(&token, now), Err(TokenError::BadSignature));
        assert_eq!(signer.verify(&token, now + chrono::Duration::seconds(61)), Err(TokenError::Expired));
        assert_eq!(signer.verify("a.b", now), Err(TokenError::Malformed));
        // Swapping in a payload that claims admin breaks the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(br#"{"iss":"promotion","sub":"alice","org":"acme","roles":[{"role":"admin","environment":"*"}],"iat":0,"exp":9999999999}"#), parts[2]);
        assert_eq!(signer.verify(&forged, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn roles_grant_the_brief_permissions() {
        use Permission::*;
        let id = alice(0);
        assert!(id.allows(PackageWrite, "dev"));
        assert!(!id.allows(PackageWrite, "qa"));
        assert!(id.allows(PackageRead, "qa"), "packages are readable organization-wide");
        assert!(!id.allows(EnvironmentWrite, "dev"));
        assert!(Role::Deployer.grants(PromotionApprove) && !Role::Deployer.grants(EnvironmentWrite));
        assert!(Role::Admin.grants(AuditRead) && !Role::Viewer.grants(AuditRead));
        assert!(Role::Internal.grants(RecordInstallation) && !Role::Internal.grants(PackageRead));
    }

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let hash = hash_secret("alice-secret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_secret("alice-secret", &hash));
        assert!(!verify_secret("alice-secreT", &hash));
        assert!(!verify_secret("alice-secret", "not a hash"));
    }
}
