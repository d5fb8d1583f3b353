//! Dates as the reader writes them: the language of their browser's `Accept-Language` (English,
//! German, French, Spanish, Italian, Dutch, Portuguese; English when none of these is asked for),
//! in UTC. Month names are written out, so "03/04" never means two dates.

use axum::{extract::FromRequestParts, http::request::Parts};

/// The languages dates are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lang {
    /// American English: "December 14, 2026" (the fallback).
    EnUs,
    /// Other English: "14 December 2026".
    En,
    De,
    Fr,
    Es,
    It,
    Nl,
    Pt,
}

/// The reader's date language, from `Accept-Language`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Locale(pub(super) Lang);

impl<S: Send + Sync> FromRequestParts<S> for Locale {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Locale(of_headers(&parts.headers)))
    }
}

tokio::task_local! {
    /// The language of the request a page is rendered for (set by [`reader_language`]).
    static READER: Lang;
}

/// Middleware of the pages: the request's date language, for the templates' `moment` filter.
pub(super) async fn reader_language(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let lang = of_headers(request.headers());
    READER.scope(lang, next.run(request)).await
}

/// The templates' `moment` filter: an RFC 3339 moment in the language of the request being
/// rendered (American English outside a request).
pub(super) fn moment(value: String) -> String {
    let lang = READER.try_with(|lang| *lang).unwrap_or(Lang::EnUs);
    Locale(lang).moment_of(&value)
}

/// The date language of a request: every `Accept-Language` line, read as one list (a line that
/// is not text is left out).
fn of_headers(headers: &axum::http::HeaderMap) -> Lang {
    let lines: Vec<&str> = headers
        .get_all(axum::http::header::ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    negotiate(&lines.join(","))
}

/// The best language of an `Accept-Language` value (highest `q`, first on ties); unknown,
/// malformed or absent: American English. At most 20 entries are read.
pub(super) fn negotiate(header: &str) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for entry in header.split(',').take(20) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let p = p.trim();
                // Parameter names are case-insensitive (`Q=0.5`).
                let value = p.get(2..).filter(|_| p[..2].eq_ignore_ascii_case("q="))?;
                value.parse::<f32>().ok()
            })
            .unwrap_or(1.0);
        if !(q > 0.0 && q <= 1.0) {
            continue;
        }
        let primary = tag.split('-').next().unwrap_or("");
        let lang = match primary {
            "en" if tag == "en" || tag == "en-us" => Lang::EnUs,
            "en" => Lang::En,
            "de" => Lang::De,
            "fr" => Lang::Fr,
            "es" => Lang::Es,
            "it" => Lang::It,
            "nl" => Lang::Nl,
            "pt" => Lang::Pt,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::EnUs, |(_, lang)| lang)
}

const MONTHS: [[&str; 12]; 7] = [
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ],
    [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ],
    [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
];

impl Locale {
    /// The day of Unix time `ts` (UTC), in the reader's language.
    pub(super) fn date(self, ts: i64) -> String {
        let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ts) else {
            return String::new();
        };
        self.ymd(t.year(), u8::from(t.month()), t.day())
    }

    /// An RFC 3339 moment (as `Access` carries them, UTC) as [`Locale::date`] writes it; empty
    /// when it cannot be read.
    pub(super) fn date_of(self, rfc3339: Option<&str>) -> String {
        let day = rfc3339.and_then(|s| s.get(..10)).and_then(|d| {
            let mut parts = d.split('-').map(|p| p.parse::<i32>().ok());
            let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
            let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
            time::Date::from_calendar_date(y, month, u8::try_from(d).ok()?).ok()
        });
        day.map_or_else(String::new, |d| {
            self.ymd(d.year(), u8::from(d.month()), d.day())
        })
    }

    /// An RFC 3339 moment (UTC) as a date and a time of day in the reader's language, with
    /// "UTC" ("December 14, 2026, 3:05 PM UTC"; "14. Dezember 2026, 15:05 UTC"); the value as
    /// given when it cannot be read.
    pub(super) fn moment_of(self, rfc3339: &str) -> String {
        let time = rfc3339.get(11..16).and_then(|t| {
            let (h, m) = t.split_once(':')?;
            Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?))
        });
        let day = self.date_of(Some(rfc3339));
        let (Some((h, m)), false) = (time.filter(|&(h, m)| h < 24 && m < 60), day.is_empty())
        else {
            return rfc3339.to_owned();
        };
        match self.0 {
            Lang::EnUs => {
                let (h12, half) = match h {
                    0 => (12, "AM"),
                    1..=11 => (h, "AM"),
                    12 => (12, "PM"),
                    _ => (h - 12, "PM"),
                };
                format!("{day}, {h12}:{m:02} {half} UTC")
            }
            _ => format!("{day}, {h:02}:{m:02} UTC"),
        }
    }

    fn ymd(self, y: i32, month: u8, d: u8) -> String {
        let m = usize::from(month.clamp(1, 12)) - 1;
        let name = |table: usize| MONTHS[table][m];
        match self.0 {
            Lang::EnUs => format!("{} {d}, {y}", name(0)),
            Lang::En => format!("{d} {} {y}", name(0)),
            Lang::De => format!("{d}. {} {y}", name(1)),
            Lang::Fr => format!("{d} {} {y}", name(2)),
            Lang::Es => format!("{d} de {} de {y}", name(3)),
            Lang::It => format!("{d} {} {y}", name(4)),
            Lang::Nl => format!("{d} {} {y}", name(5)),
            Lang::Pt => format!("{d} de {} de {y}", name(6)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accept_language_line_counts() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("accept-language", "en;q=0.2".parse().unwrap());
        headers.append("accept-language", "nl".parse().unwrap());
        assert_eq!(of_headers(&headers), Lang::Nl);
        headers.append(
            "accept-language",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(
            of_headers(&headers),
            Lang::Nl,
            "a line that is not text is left out"
        );
        assert_eq!(of_headers(&axum::http::HeaderMap::new()), Lang::EnUs);
    }

    #[test]
    fn the_readers_language_writes_the_moment() {
        let at = "2026-12-14T15:05:00Z";
        let cases = [
            (Lang::EnUs, "December 14, 2026, 3:05 PM UTC"),
            (Lang::En, "14 December 2026, 15:05 UTC"),
            (Lang::De, "14. Dezember 2026, 15:05 UTC"),
            (Lang::Fr, "14 décembre 2026, 15:05 UTC"),
            (Lang::Pt, "14 de dezembro de 2026, 15:05 UTC"),
        ];
        for (lang, expected) in cases {
            assert_eq!(Locale(lang).moment_of(at), expected, "{lang:?}");
        }
        let us = Locale(Lang::EnUs);
        assert_eq!(
            us.moment_of("2026-12-14T00:30:00Z"),
            "December 14, 2026, 12:30 AM UTC"
        );
        assert_eq!(
            us.moment_of("2026-12-14T12:00:00Z"),
            "December 14, 2026, 12:00 PM UTC"
        );
        // Not a moment: shown as given, never a wrong date.
        for bad in [
            "",
            "yesterday",
            "2026-13-01T10:00:00Z",
            "2026-12-14T25:00:00Z",
        ] {
            assert_eq!(us.moment_of(bad), bad);
        }
        // Outside a request the filter writes American English.
        assert_eq!(moment(at.to_owned()), "December 14, 2026, 3:05 PM UTC");
    }

    #[test]
    fn the_readers_language_writes_the_date() {
        // 2026-12-14T12:00:00Z.
        let ts = 1_797_249_600;
        let cases = [
            ("", "December 14, 2026"),
            ("en-US,en;q=0.9", "December 14, 2026"),
            ("en-GB", "14 December 2026"),
            ("de-DE,de;q=0.9,en;q=0.8", "14. Dezember 2026"),
            ("fr-CH, fr;q=0.9, en;q=0.8", "14 décembre 2026"),
            ("ja, es;q=0.5", "14 de diciembre de 2026"),
            ("en;q=0.4, it;q=0.6", "14 dicembre 2026"),
            ("de;Q=0, fr;q=0.5", "14 décembre 2026"),
            ("nl", "14 december 2026"),
            ("pt-BR", "14 de dezembro de 2026"),
            ("xx, zz;q=0.3", "December 14, 2026"),
            ("de;q=0, fr;q=2", "December 14, 2026"),
            (";;;,,,q=", "December 14, 2026"),
        ];
        for (header, expected) in cases {
            assert_eq!(Locale(negotiate(header)).date(ts), expected, "{header:?}");
        }
        assert_eq!(
            Locale(Lang::De).date_of(Some("2026-12-14T12:00:00Z")),
            "14. Dezember 2026"
        );
        assert_eq!(Locale(Lang::De).date_of(Some("not a date")), "");
    }
}
