//! The forgets' wire format, the same on both channels ([`super::push`] on PostgreSQL,
//! [`super::poll`] on SQLite), written by the database's own triggers (migration 0027): keys
//! `u:<user id>`, `s:<hex SHA-256 of the session id>` (the stored form: never the id itself) or
//! `*` (everything), space-separated.

use super::{Forget, SessionKey};

/// The forgets a payload's keys name; a key it cannot read is everything.
pub fn parse(keys: &str) -> Vec<Forget> {
    keys.split(' ')
        .filter(|k| !k.is_empty())
        .map(|key| {
            if let Some(user) = key.strip_prefix("u:").filter(|u| !u.is_empty()) {
                return Forget::User(user.to_owned());
            }
            let session = key
                .strip_prefix("s:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| SessionKey::try_from(b).ok());
            session.map_or(Forget::Everything, Forget::Session)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(forget: &Forget) -> String {
        match forget {
            Forget::User(user) => format!("u:{user}"),
            Forget::Session(key) => format!("s:{}", hex::encode(key)),
            Forget::Everything => "*".into(),
        }
    }

    #[test]
    fn payload_keys_read_back() {
        let key = [7u8; 32];
        let words = [
            word(&Forget::User("usr_1".into())),
            word(&Forget::Session(key)),
            word(&Forget::Everything),
        ];
        assert_eq!(
            parse(&words.join(" ")),
            vec![
                Forget::User("usr_1".into()),
                Forget::Session(key),
                Forget::Everything
            ]
        );
    }

    #[test]
    fn an_unreadable_key_forgets_everything() {
        for bad in ["s:zz", "s:0011", "x:1", "u:", "ping?"] {
            assert_eq!(parse(bad), vec![Forget::Everything], "{bad}");
        }
    }
}
