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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// Clocks of the hosts that issue and check tokens may disagree by this much: a token
/// issued or valid "in the future" by less is accepted.
pub const CLOCK_LEEWAY_SECONDS: i64 = 60;
/// The longest lifetime a signer accepts unless told the deployment's own
/// (`auth.max_ttl_seconds`, whose default this is).
pub const DEFAULT_MAX_LIFETIME_SECONDS: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongIssuer,
    /// `iat` or `nbf` later than now (beyond the clock leeway).
    NotYetValid,
    /// `exp - iat` longer than the deployment lets any token live.
    LifetimeTooLong {
        max_seconds: i64,
    },
    /// A header this verifier does not implement: another `alg` or `typ`, or any `crit`.
    UnsupportedHeader(&'static str),
}

impl TokenError {
    /// The ErrorInfo reason UNAUTHENTICATED carries for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Expired => "TOKEN_EXPIRED",
            TokenError::BadSignature | TokenError::WrongIssuer => "TOKEN_INVALID",
            TokenError::Malformed => "TOKEN_MALFORMED",
            TokenError::NotYetValid => "TOKEN_NOT_YET_VALID",
            TokenError::LifetimeTooLong { .. } => "TOKEN_LIFETIME_TOO_LONG",
            TokenError::UnsupportedHeader(_) => "TOKEN_UNSUPPORTED",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("the bearer token is malformed"),
            TokenError::BadSignature => f.write_str("the bearer token's signature is not valid"),
            TokenError::Expired => f.write_str("the bearer token has expired"),
            TokenError::WrongIssuer => f.write_str("the bearer token was issued by someone else"),
            TokenError::NotYetValid => f.write_str(
                "the bearer token is not valid yet: its iat or nbf is in the future (check the clocks of both hosts)",
            ),
            TokenError::LifetimeTooLong { max_seconds } => {
                write!(
                    f,
                    "the bearer token lives longer than the {max_seconds} seconds a token may (auth.max_ttl_seconds)"
                )
            }
            TokenError::UnsupportedHeader(what) => write!(f, "the bearer token's header is not supported: {what}"),
        }
    }
}

/// Signs and verifies HS256 JWTs with the deployment's shared key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
    issuer: String,
    max_lifetime: i64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenSigner {
    pub fn new(key: &[u8], issuer: &str) -> Self {
        Self { key: key.to_vec(), issuer: issuer.into(), max_lifetime: DEFAULT_MAX_LIFETIME_SECONDS }
    }

    /// The same signer, refusing tokens that live longer than `seconds` (the
    /// deployment's `auth.max_ttl_seconds`: no token it issued lives longer).
    pub fn with_max_lifetime(self, seconds: i64) -> Self {
        Self { max_lifetime: seconds, ..self }
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
            nbf: None,
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let signing_input = format!("{}.{}", B64.encode(JWT_HEADER), B64.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Checks the signature (constant time), then the header and every claim: issuer,
    /// expiry, issue and not-before times, lifetime.
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
        check_header(&serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?)?;
        // Straight into the struct, so a payload naming a claim twice is malformed rather
        // than read one way here and another way elsewhere.
        let claims: Claims = serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        self.check_claims(&claims, now.timestamp())?;
        Ok(Identity { subject: claims.sub, organization: claims.org, bindings: claims.roles, expires_at: claims.exp })
    }

    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        if claims.sub.is_empty() || claims.org.is_empty() {
            return Err(TokenError::Malformed);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        // No leeway on expiry: a token ends when its issuer said, on every host.
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.exp <= claims.iat {
            return Err(TokenError::Malformed);
        }
        let latest_start = now.saturating_add(CLOCK_LEEWAY_SECONDS);
        if claims.iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(TokenError::LifetimeTooLong { max_seconds: self.max_lifetime });
        }
        Ok(())
    }
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    B64.decode(part).map_err(|_| TokenError::Malformed)
}

/// Only what [`TokenSigner::issue`] writes is understood: HS256, type JWT if named, and no
/// `crit` (RFC 7515 §4.1.11: a verifier must refuse extensions it does not implement).
fn check_header(header: &serde_json::Value) -> Result<(), TokenError> {
    let header = header.as_object().ok_or(TokenError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(TokenError::UnsupportedHeader("alg must be HS256"));
    }
    match header.get("typ") {
        None => {}
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(TokenError::UnsupportedHeader("typ must be JWT")),
    }
    if header.contains_key("crit") {
        return Err(TokenError::UnsupportedHeader("no crit extension is implemented"));
    }
    Ok(())
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

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> TokenSigner {
        TokenSigner::new(KEY, "promotion").with_max_lifetime(3600)
    }

    /// A token with exactly this header and payload, correctly signed: what someone
    /// holding the key (or a buggy issuer) could send.
    fn signed(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    fn claims(iat: i64, exp: i64, nbf: Option<i64>) -> String {
        let nbf = nbf.map(|n| format!(r#","nbf":{n}"#)).unwrap_or_default();
        format!(r#"{{"iss":"promotion","sub":"alice","org":"acme","roles":[],"iat":{iat},"exp":{exp}{nbf}}}"#)
    }

    fn verify(header: &str, payload: &str, now: i64) -> Result<Identity, TokenError> {
        signer().verify(&signed(header, payload), Utc.timestamp_opt(now, 0).unwrap())
    }

    use chrono::TimeZone;
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_not_valid_before_a_later_time_is_refused_until_then() {
        let later = claims(NOW, NOW + 600, Some(NOW + 300));
        assert_eq!(verify(JWT_HEADER, &later, NOW), Err(TokenError::NotYetValid));
        assert_eq!(TokenError::NotYetValid.reason(), "TOKEN_NOT_YET_VALID");
        assert!(verify(JWT_HEADER, &later, NOW + 300).is_ok());
        // Clocks disagree a little: within the leeway the token is already good.
        assert!(verify(JWT_HEADER, &later, NOW + 300 - CLOCK_LEEWAY_SECONDS).is_ok());
        assert!(verify(JWT_HEADER, &claims(NOW, NOW + 600, Some(NOW - 10)), NOW).is_ok());
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused_beyond_the_clock_leeway() {
        let ahead = NOW + CLOCK_LEEWAY_SECONDS + 1;
        assert_eq!(verify(JWT_HEADER, &claims(ahead, ahead + 60, None), NOW), Err(TokenError::NotYetValid));
        let skewed = NOW + CLOCK_LEEWAY_SECONDS;
        assert!(verify(JWT_HEADER, &claims(skewed, skewed + 60, None), NOW).is_ok());
    }

    #[test]
    fn a_token_living_longer_than_the_deployment_allows_is_refused() {
        let forever = claims(NOW, i64::MAX, None);
        assert_eq!(verify(JWT_HEADER, &forever, NOW), Err(TokenError::LifetimeTooLong { max_seconds: 3600 }));
        assert_eq!(
            verify(JWT_HEADER, &claims(i64::MIN, NOW + 60, None), NOW).unwrap_err().reason(),
            "TOKEN_LIFETIME_TOO_LONG"
        );
        assert!(verify(JWT_HEADER, &claims(NOW, NOW + 3600, None), NOW).is_ok());
        assert!(verify(JWT_HEADER, &claims(NOW, NOW + 3601, None), NOW).is_err());
        let lenient = TokenSigner::new(KEY, "promotion").with_max_lifetime(7200);
        assert!(lenient
            .verify(&signed(JWT_HEADER, &claims(NOW, NOW + 3601, None)), Utc.timestamp_opt(NOW, 0).unwrap())
            .is_ok());
    }

    #[test]
    fn headers_other_than_the_issuers_own_are_refused() {
        let good = claims(NOW, NOW + 60, None);
        for header in [
            r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWE"}"#,
            r#"{"alg":"HS256","typ":7}"#,
        ] {
            let err = verify(header, &good, NOW).unwrap_err();
            assert!(matches!(err, TokenError::UnsupportedHeader(_)), "{header}: {err:?}");
            assert_eq!(err.reason(), "TOKEN_UNSUPPORTED");
        }
        assert!(verify(r#"{"alg":"HS256"}"#, &good, NOW).is_ok(), "typ is optional");
        assert!(verify(r#"{"alg":"HS256","typ":"jwt"}"#, &good, NOW).is_ok());
        assert_eq!(verify("[]", &good, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn claims_that_cannot_be_read_one_way_only_are_malformed() {
        let twice = r#"{"iss":"promotion","sub":"alice","org":"acme","roles":[],"iat":0,"exp":1,"exp":9999999999}"#;
        assert_eq!(verify(JWT_HEADER, twice, NOW), Err(TokenError::Malformed));
        let nobody = claims(NOW, NOW + 60, None).replace(r#""sub":"alice""#, r#""sub":"""#);
        assert_eq!(verify(JWT_HEADER, &nobody, NOW), Err(TokenError::Malformed));
        let backwards = claims(NOW + 30, NOW + 10, None);
        assert_eq!(verify(JWT_HEADER, &backwards, NOW), Err(TokenError::Malformed));
        let fractional = claims(NOW, NOW + 60, None).replace(&format!("{}", NOW + 60), "1.8e9");
        assert_eq!(verify(JWT_HEADER, &fractional, NOW), Err(TokenError::Malformed));
    }

    proptest::proptest! {
        /// Whatever the times, a token is accepted exactly when every time rule holds.
        #[test]
        fn acceptance_is_exactly_the_time_rules(iat in -5000i64..5000, life in -100i64..8000, nbf in proptest::option::of(-5000i64..5000)) {
            let (iat, nbf) = (NOW + iat, nbf.map(|n| NOW + n));
            let exp = iat.saturating_add(life);
            let accepted = verify(JWT_HEADER, &claims(iat, exp, nbf), NOW).is_ok();
            let rules = exp > iat
                && exp > NOW
                && iat <= NOW + CLOCK_LEEWAY_SECONDS
                && nbf.is_none_or(|n| n <= NOW + CLOCK_LEEWAY_SECONDS)
                && exp - iat <= 3600;
            proptest::prop_assert_eq!(accepted, rules);
        }
    }
}
