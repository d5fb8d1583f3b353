//! Password policy and hashing.
//!
//! Policy after NIST SP 800-63B: a configurable minimum (default 8 characters), at least 64
//! allowed, more than 1024 bytes refused before any hashing (so a huge password cannot buy CPU), no
//! composition rules, no trimming or truncation, NFKC normalisation so the same password typed on
//! two keyboards matches, and a blocklist of the 10,000 most common passwords.
//!
//! Hashing is argon2id with OWASP's parameters by default, as PHC strings. It runs on the blocking
//! pool behind a semaphore sized to the cores: a flood of logins queues here instead of spawning
//! unbounded 19 MiB hashes or stalling the async workers.

use std::{collections::HashSet, sync::Arc, sync::OnceLock};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use tokio::sync::{OnceCell, Semaphore};
use unicode_normalization::UnicodeNormalization as _;

use crate::{config::Argon2Params, error::AppError};

/// Longest accepted password, in bytes of the submitted text.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn blocklist() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    })
}

/// Checks a new password against the policy and returns the normalised form to hash.
pub fn check_new_password(raw: &str, min_chars: usize) -> Result<String, AppError> {
    // Decided on the raw bytes, before normalisation or hashing.
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::PasswordTooLong);
    }
    let normalised = normalise(raw);
    if normalised.chars().count() < min_chars {
        return Err(AppError::PasswordTooShort(min_chars));
    }
    if blocklist().contains(normalised.to_lowercase().as_str()) {
        return Err(AppError::PasswordTooCommon);
    }
    Ok(normalised)
}

/// NFKC, nothing else: no trimming, no case folding.
pub fn normalise(raw: &str) -> String {
    raw.nfkc().collect()
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or no hash at all).
    No,
    /// Right password; the hash uses the current parameters.
    Yes,
    /// Right password; store this new hash, made with the current parameters.
    YesRehashed(String),
}

/// Hashes and verifies passwords off the async workers, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasherPool {
    /// A pool for `params`, running at most one hash per core at once.
    pub fn new(params: Argon2Params) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            params: Params::new(params.m_kib, params.t, params.p, None)
                .expect("argon2 parameters are validated by Config"),
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(OnceCell::new()),
        }
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Internal(e.into()))
    }

    /// Hashes an already-normalised password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let params = self.params.clone();
        self.blocking(move || {
            Self::argon2(params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| AppError::Internal(anyhow::anyhow!("argon2 hash failed: {e}")))
    }

    /// Verifies `password` (raw, as submitted) against `stored`. With no stored hash it still does
    /// one full verification against a dummy hash, so unknown accounts take as long as known ones.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<Verified, AppError> {
        if password.len() > MAX_PASSWORD_BYTES {
            // Never hashed; answered like any wrong password.
            return Ok(Verified::No);
        }
        let dummy = self
            .dummy
            .get_or_try_init(|| self.hash("tollgate dummy password".into()))
            .await?;
        let (phc, real) = match stored {
            Some(h) => (h.to_owned(), true),
            None => (dummy.clone(), false),
        };
        let password = normalise(password);
        let again = password.clone();
        let current = self.params.clone();
        let (ok, stale) = self
            .blocking(move || {
                let Ok(parsed) = PasswordHash::new(&phc) else {
                    return (false, false);
                };
                let stale = Params::try_from(&parsed).map_or(true, |p| {
                    p.m_cost() != current.m_cost()
                        || p.t_cost() != current.t_cost()
                        || p.p_cost() != current.p_cost()
                }) || parsed.algorithm.as_str() != "argon2id";
                let ok = Self::argon2(current)
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                (ok, stale)
            })
            .await?;
        if !(ok && real) {
            return Ok(Verified::No);
        }
        if stale {
            // The configured parameters changed since this hash was made: upgrade it now, while
            // we hold the plaintext.
            return Ok(Verified::YesRehashed(self.hash(again).await?));
        }
        Ok(Verified::Yes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_cases() {
        let cases: &[(&str, Result<(), &str>, &str)] = &[
            ("correct horse battery", Ok(()), "a passphrase is fine"),
            ("short", Err("password_too_short"), "below the minimum"),
            ("password", Err("password_too_common"), "on the blocklist"),
            (
                "PassWord",
                Err("password_too_common"),
                "blocklist ignores case",
            ),
            (
                "ааааааааb",
                Ok(()),
                "non-ASCII counts characters, not bytes",
            ),
            ("  spaced out  ", Ok(()), "spaces are kept, not trimmed"),
        ];
        for (password, expected, why) in cases {
            let got = check_new_password(password, 8)
                .map(|_| ())
                .map_err(|e| e.status_and_code().1);
            assert_eq!(&got, expected, "{why}");
        }
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            check_new_password(&long, 8),
            Err(AppError::PasswordTooLong)
        ));
        assert!(check_new_password(&"x".repeat(64).replace("xx", "xy"), 8).is_ok());
    }

    #[test]
    fn nfkc_makes_compatibility_forms_equal() {
        assert_eq!(normalise("ｐａｓｓ"), "pass");
        assert_eq!(normalise("  a "), "  a ");
    }
}
