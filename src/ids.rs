//! Opaque ids: a prefix naming the kind of thing, and 128 random bits.

use rand::RngCore as _;

/// A new opaque id, `{prefix}_{32 hex digits}`, with 128 random bits.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_128_random_bits() {
        let (a, b) = (new_id("usr"), new_id("usr"));
        assert!(a.starts_with("usr_") && a.len() == 4 + 32, "{a}");
        assert_ne!(a, b);
    }
}
