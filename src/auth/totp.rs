//! Time-based one-time passwords (RFC 6238) as authenticator apps make them: HMAC-SHA-1, 6 digits,
//! 30-second steps, a 160-bit secret shown as base32 in an `otpauth://` URI.
//!
//! The algorithm only: [`super::second_factor`] builds enrolment and sign-in on it. A code is
//! accepted for the step before, the step of, and the step after now (±30 s of clock drift),
//! and only for a step later than the last one used, so a code cannot be replayed.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Bytes of a secret (RFC 4226 recommends 160 bits).
pub const SECRET_BYTES: usize = 20;

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// The step `unix` seconds fall in.
pub fn step_of(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// The code of `step` (RFC 4226's HOTP with the step as the counter, truncated to [`DIGITS`]).
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        value % 10u32.pow(DIGITS as u32),
        width = DIGITS
    )
}

/// The step at which `code` is valid around `now` (one step either side), if it is later than
/// `last_used` (a step already used, or one before it, is refused: no replay). Every candidate is
/// compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let equal: bool = code_at(secret, step)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if equal && last_used.is_none_or(|used| step > used) {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI an authenticator app scans: `issuer` (the product) and `account` (the
/// user's address) label it.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    // RFC 3986's unreserved characters stay as they are; everything else (`@`, `:`, spaces) is
    // escaped, so the label's one `:` separates issuer and account.
    const LABEL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, LABEL).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        data_encoding::BASE32_NOPAD.encode(secret),
        enc(issuer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (its 8-digit codes, here the last 6 digits).
    #[test]
    fn the_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(secret, step_of(time)), code, "T = {time}");
        }
    }

    #[test]
    fn a_code_holds_one_step_either_side_and_never_twice() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let step = step_of(now);
        for (offset, ok) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_at(&secret, step + offset);
            assert_eq!(
                matching_step(&secret, &code, now, None),
                ok.then_some(step + offset),
                "{offset}"
            );
        }
        let code = code_at(&secret, step);
        assert_eq!(
            matching_step(&secret, &code, now, Some(step)),
            None,
            "replay"
        );
        assert_eq!(
            matching_step(&secret, &code, now, Some(step - 1)),
            Some(step)
        );
        let earlier = code_at(&secret, step - 1);
        assert_eq!(
            matching_step(&secret, &earlier, now, Some(step)),
            None,
            "older than used"
        );
        for bad in ["", "12345", "1234567", "12345a", " 12 345"] {
            assert_eq!(matching_step(&secret, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn the_uri_carries_the_secret_in_base32_and_escapes_the_labels() {
        let uri = otpauth_uri(b"12345678901234567890", "Acme & Co", "ann@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20%26%20Co:ann%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20%26%20Co&algorithm=SHA1&digits=6&period=30"
        );
    }
}
