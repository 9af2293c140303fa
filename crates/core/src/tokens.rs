//! Signed bearer tokens (JWT, HS256) carrying an identity.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity::{Binding, Identity};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

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
}
