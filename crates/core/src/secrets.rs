//! Client secret hashes (argon2id PHC strings) and their constant-time check.

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

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let hash = hash_secret("alice-secret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_secret("alice-secret", &hash));
        assert!(!verify_secret("alice-secreT", &hash));
        assert!(!verify_secret("alice-secret", "not a hash"));
    }
}
