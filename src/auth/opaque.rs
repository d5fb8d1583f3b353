//! Opaque bearer tokens (refresh tokens, pending sign-ins, passkey ceremonies): a prefix that names
//! the kind, then 256 random bits in lower-case hex. Only a SHA-256 hash is stored, so a database
//! dump holds nothing to present.

use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// A new token of the kind `prefix` names.
pub fn new(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The SHA-256 hash of a token, hex: what is stored and looked up.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// True for a string shaped like a token of the kind `prefix` names (checked before any lookup).
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_only_under_their_own_prefix() {
        let token = new("tgx_");
        assert!(well_formed(&token, "tgx_"));
        assert!(!well_formed(&token, "tgy_"));
        assert!(!well_formed(&token.to_uppercase(), "tgx_"));
        assert!(!well_formed(&token[..token.len() - 1], "tgx_"));
        assert_ne!(new("tgx_"), token);
        assert_eq!(hash(&token).len(), 64);
    }
}
