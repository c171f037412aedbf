//! Authentication: argon2 password hashes, HMAC-signed JWTs, and the secret
//! they are signed with (generated once and kept in the data directory when
//! the settings give none, so tokens survive a restart).
//!
//! Two kinds of token: a *login* token names a user account (a host); a
//! *join* token names a participant of one webinar (a registration, or a
//! host/co-host account joining its webinar). Roles are not trusted from the
//! token: they are read from the store on every use, so a promotion or a
//! demotion takes effect at once.

use std::path::Path;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Login,
    Join,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (login tokens and host join tokens) or registration id.
    pub sub: String,
    pub kind: TokenKind,
    /// The webinar a join token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wid: Option<String>,
    /// Set on join tokens issued to a registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    login_ttl: chrono::Duration,
    join_ttl: chrono::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], settings: &AuthSettings) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            login_ttl: settings.login_token_ttl(),
            join_ttl: settings.join_token_ttl(),
        }
    }

    pub fn login_token(&self, user_id: &str) -> String {
        self.sign(user_id, TokenKind::Login, None, None, self.login_ttl)
    }

    pub fn join_token(
        &self,
        subject: &str,
        webinar_id: &str,
        registration_id: Option<&str>,
    ) -> String {
        self.sign(
            subject,
            TokenKind::Join,
            Some(webinar_id.to_string()),
            registration_id.map(str::to_string),
            self.join_ttl,
        )
    }

    fn sign(
        &self,
        sub: &str,
        kind: TokenKind,
        wid: Option<String>,
        rid: Option<String>,
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            kind,
            wid,
            rid,
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// The configured secret, or the one persisted in `data_dir/jwt_secret`
/// (created with 32 random bytes on first start, readable by the owner only).
pub fn load_or_create_secret(settings: &AuthSettings, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tmp = data_dir.join("jwt_secret.tmp");
    std::fs::write(&tmp, &secret)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(secret.into_bytes())
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh registration access key (shown to the registrant once).
pub fn new_access_key() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of an access key.
pub fn access_key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_from_another_secret_are_refused() {
        let a = TokenIssuer::new(b"secret-a", &AuthSettings::default());
        let b = TokenIssuer::new(b"secret-b", &AuthSettings::default());
        let token = a.login_token("u1");
        assert_eq!(a.verify(&token).unwrap().sub, "u1");
        assert!(matches!(b.verify(&token), Err(TokenError::Invalid)));
        assert!(matches!(a.verify("garbage"), Err(TokenError::Invalid)));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let settings = AuthSettings {
            login_token_minutes: Some(0),
            ..Default::default()
        };
        let issuer = TokenIssuer::new(b"s", &settings);
        let token = issuer.login_token("u1");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(matches!(issuer.verify(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn generated_secret_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(&AuthSettings::default(), dir.path()).unwrap();
        let b = load_or_create_secret(&AuthSettings::default(), dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
    }
}
