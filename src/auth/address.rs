//! Email addresses: how one is read, and when two are the same address.

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

use crate::{error::AppError, telemetry};

/// An email address as typed (trimmed) and its normalised form, which logins match on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// As typed, minus surrounding white space; shown back to the user.
    pub display: String,
    /// Trimmed, NFC, lower-cased: one account per normalised address.
    pub normalised: String,
}

impl Email {
    /// Parses an address: one `@`, a non-empty local part, a dotted domain, no spaces, control or
    /// format characters, at most 254 bytes. Deliberately lenient beyond that; the verification
    /// email is the real test.
    ///
    /// Addresses that look the same are the same: compatibility forms (fullwidth letters, `＠`,
    /// ligatures) fold to their plain forms (NFKC), the local part is lower-cased, and the domain
    /// goes through IDNA (UTS #46), so `ＡＮＮ@Bücher.DE`, `ann@xn--bcher-kva.de` and
    /// `ann@bücher.de` are one address.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let display: String = raw.trim().nfkc().collect();
        // Invisible characters (zero-width spaces and joiners, bidi controls, soft hyphens) would
        // make two addresses that look alike different accounts: refused outright.
        if display
            .chars()
            .any(is_invisible)
            || stray_mark(&display)
            // A quoted local part (`"ann"@x`) is the same mailbox as the unquoted one.
            || display.contains('"')
        {
            return Err(AppError::InvalidEmail);
        }
        let valid = display.len() <= 254
            && display.split('@').count() == 2
            && !display
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
            && display.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        let Some((local, domain)) = display.split_once('@').filter(|_| valid) else {
            return Err(AppError::InvalidEmail);
        };
        // The domain as DNS resolves it, kept in its Unicode form so stored rows keep matching.
        let ascii = idna::domain_to_ascii(domain).map_err(|_| AppError::InvalidEmail)?;
        let (domain_norm, checked) = idna::domain_to_unicode(&ascii);
        checked.map_err(|_| AppError::InvalidEmail)?;
        Ok(Self {
            normalised: format!("{}@{domain_norm}", local.to_lowercase()),
            display,
        })
    }

    /// The normalised form of `raw`, or its trimmed lower-case form when it is not a valid
    /// address: the key logins and rate limits count under, whatever was typed.
    pub fn normalise_lenient(raw: &str) -> String {
        Self::parse(raw)
            .map(|e| e.normalised)
            .unwrap_or_else(|_| raw.trim().to_lowercase())
    }

    /// `j***@example.com`: for logs, which never hold full addresses.
    pub fn masked(&self) -> String {
        telemetry::mask_address(&self.display)
    }
}

/// A character that shows nothing, or nothing of its own: Unicode format characters (zero-width
/// spaces and joiners, bidi controls) and the other default-ignorable ones below. Two strings
/// that differ only by them look alike.
pub(crate) fn is_invisible(c: char) -> bool {
    c.general_category() == GeneralCategory::Format || invisible(c)
}

/// Unicode's other default-ignorable code points (variation selectors, the combining grapheme
/// joiner, Hangul fillers, Mongolian and Khmer invisibles, tags…) and the blank braille pattern.
fn invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// A combining mark with nothing of its own script to combine with: at the start of a part, or
/// after an ASCII character (after NFKC, `e` + U+0301 has become `é`; what is left only hides).
fn stray_mark(address: &str) -> bool {
    let mut previous: Option<char> = None;
    address.chars().any(|c| {
        let mark = matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        );
        let stray = mark && previous.is_none_or(|p| p.is_ascii());
        previous = Some(c);
        stray
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_and_validate() {
        let e = Email::parse("  Ann.Lee@Example.COM ").unwrap();
        assert_eq!(e.display, "Ann.Lee@Example.COM");
        assert_eq!(e.normalised, "ann.lee@example.com");
        // NFC: a decomposed é equals the composed one.
        assert_eq!(
            Email::parse("e\u{301}@x.io").unwrap().normalised,
            Email::parse("\u{e9}@x.io").unwrap().normalised
        );
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.io",
            "a b@c.io",
            "@c.io",
            "a@.io",
            "a@c..io",
            "a@c.io\r\nBcc: x@y.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(e.masked(), "A***@Example.COM");
    }

    #[test]
    fn addresses_that_look_the_same_are_the_same() {
        let ann = "ann@bücher.de";
        let same: &[(&str, &str)] = &[
            ("ＡＮＮ@ＢÜＣＨＥＲ.ＤＥ", "fullwidth letters"),
            ("ann＠bücher.de", "a fullwidth at sign"),
            ("ann@xn--bcher-kva.de", "the punycode domain"),
            ("Ann@BÜCHER.de", "case"),
            ("ann@bu\u{308}cher.de", "a decomposed ü"),
            ("ann@bücher\u{ff0e}de", "a fullwidth full stop"),
        ];
        let want = Email::parse(ann).unwrap().normalised;
        for (raw, why) in same {
            assert_eq!(
                Email::parse(raw).unwrap().normalised,
                want,
                "{why}: {raw:?}"
            );
        }
        let refused: &[(&str, &str)] = &[
            ("ann\u{200b}@example.com", "zero-width space"),
            ("ann@exa\u{200d}mple.com", "zero-width joiner"),
            ("\u{feff}ann@example.com", "byte-order mark"),
            ("ann@example.com\u{202e}", "bidi override"),
            ("an\u{ad}n@example.com", "soft hyphen"),
            ("ann＠b＠example.com", "two at signs once folded"),
            ("ann@xn--a.com", "broken punycode"),
            ("an\u{34f}n@example.com", "combining grapheme joiner"),
            ("ann\u{fe0f}@example.com", "variation selector"),
            ("a\u{3164}nn@example.com", "Hangul filler"),
            ("ann\u{ffa0}@example.com", "halfwidth Hangul filler"),
            ("ann\u{2800}@example.com", "blank braille pattern"),
            ("ann\u{180b}@example.com", "Mongolian variation selector"),
            ("ann\u{17b4}@example.com", "Khmer invisible vowel"),
            ("annx\u{300}@example.com", "a stray combining mark"),
            (
                "\u{301}ann@example.com",
                "a mark with nothing to combine with",
            ),
            ("\"ann\"@example.com", "a quoted local part"),
        ];
        // Scripts whose letters take marks stay welcome.
        assert!(Email::parse("अनु@example.com").is_ok());
        for (raw, why) in refused {
            assert!(
                Email::parse(raw).is_err(),
                "{why}: {raw:?} should be refused"
            );
        }
    }
}
