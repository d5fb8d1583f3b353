//! The keys access tokens are signed with: the `signing_keys` table, the published key set
//! (`/.well-known/jwks.json`), signing and verifying.
//!
//! Access tokens are JWTs signed with Ed25519 (`alg: EdDSA`) and nothing else: no shared-secret
//! (HS256) key exists to be confused with, and `alg: none` is not an algorithm here. The JWT
//! encoding and claim checks are the `jsonwebtoken` crate's; the signatures are ring's, installed
//! as its crypto provider (`PROVIDER`).
//!
//! Keys: one is generated at first start (or given by `TOLLGATE_JWT_SIGNING_KEY`, then only its
//! public half is stored); `tollgate jwt rotate` retires the current key and makes a new one.
//! Every instance reads the table again at least every 30 s, and at once (at most once a second)
//! when a token names a key it does not know or no longer trusts. A rotation takes effect in two
//! steps: the new key is published by every instance within 30 s but signs only once it is
//! [`PUBLISH_AHEAD_SECS`] old, when every instance publishes it and every copy of the key set
//! cached by its `max-age` ([`JWKS_MAX_AGE_SECS`]) holds it (until then the retired key goes on
//! signing); a retired key is still published and still verifies for [`Keys::retired_window`]
//! (that delay, the longest an access token lives, and a minute), so no token is orphaned by a
//! rotation. Key times are wall-clock seconds (the simulator's test clock does not move them).

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::Ed25519KeyPair;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{clock::wall_now, db::Db};

mod provider;

use provider::install_provider;

/// What every key id starts with: how tollgate knows its own tokens among other bearer tokens.
pub const KID_PREFIX: &str = "tollgate-";
/// The `typ` of an access token's header (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// How often an instance reads the key table again.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// How long a verifier may cache the published key set (its `Cache-Control: max-age`).
pub const JWKS_MAX_AGE_SECS: i64 = 60;
/// How long a new key is published before it signs: longer than every instance takes to read
/// the table again.
pub const PUBLISH_AHEAD_SECS: i64 = RELOAD_EVERY.as_secs() as i64 + JWKS_MAX_AGE_SECS + 30;
/// How often a token naming an unknown key may make an instance read the table again.
const UNKNOWN_KID_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A key as the table holds it.
#[derive(Clone)]
struct StoredKey {
    kid: String,
    /// The 32-byte public key.
    public: Vec<u8>,
    /// The PKCS#8 document, when this instance can sign with the key.
    private: Option<Vec<u8>>,
    created_at: i64,
    retired_at: Option<i64>,
}

/// A row of `signing_keys`: kid, public key, private key, created, retired.
type KeyRow = (String, String, Option<String>, i64, Option<i64>);

/// The keys one instance knows, as read from the table.
struct KeySet {
    /// Current keys first, then retired ones; newest first within each.
    keys: Vec<StoredKey>,
    loaded_at: Instant,
}

/// The signing keys of this deployment, read from the table and kept fresh (see the module).
pub struct Keys {
    db: Db,
    /// A key given by setting: its PKCS#8 document, which never reaches the table.
    configured: Option<(String, Vec<u8>)>,
    /// How long after its retirement a key is still published and trusted.
    retired_window: i64,
    set: RwLock<Arc<KeySet>>,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

/// The key id of a public key: `tollgate-` and its RFC 7638 thumbprint.
fn kid_of(public: &[u8]) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    format!(
        "{KID_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
    )
}

/// A new Ed25519 key: its PKCS#8 document.
fn generate() -> anyhow::Result<Vec<u8>> {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    Ok(doc.as_ref().to_vec())
}

/// The public key of a PKCS#8 document (v1, as `openssl genpkey -algorithm ed25519` writes it,
/// or v2).
fn public_of(pkcs8: &[u8]) -> anyhow::Result<Vec<u8>> {
    crate::config::signing_key_public(pkcs8).map_err(anyhow::Error::msg)
}

impl Keys {
    /// Reads the keys, creating the first one on first start, or making the configured one
    /// current. `access_token_secs` bounds how long a retired key must still verify.
    pub async fn load(
        db: &Db,
        configured: Option<&str>,
        access_token_secs: u64,
    ) -> anyhow::Result<Self> {
        install_provider();
        let now = wall_now();
        let configured = match configured {
            Some(text) => {
                let der = crate::config::parse_signing_key(text)
                    .map_err(|e| anyhow::anyhow!("TOLLGATE_JWT_SIGNING_KEY: {e}"))?;
                Some((der.clone(), public_of(&der)?))
            }
            None => None,
        };
        let keys = Self {
            db: db.clone(),
            configured: configured
                .as_ref()
                .map(|(der, public)| (kid_of(public), der.clone())),
            retired_window: PUBLISH_AHEAD_SECS + access_token_secs as i64 + 60,
            set: RwLock::new(Arc::new(KeySet {
                keys: vec![],
                loaded_at: Instant::now(),
            })),
            reloading: tokio::sync::Mutex::new(()),
        };
        match &configured {
            Some((_, public)) => keys.make_current(&kid_of(public), public, now).await?,
            None => {
                if keys
                    .read_table()
                    .await?
                    .iter()
                    .all(|k| k.retired_at.is_some())
                {
                    let der = generate()?;
                    let public = public_of(&der)?;
                    keys.insert(&kid_of(&public), &public, Some(&der), now)
                        .await?;
                }
            }
        }
        keys.reload().await?;
        if keys.signing_key().is_none() {
            anyhow::bail!(
                "the current JWT signing key was given by TOLLGATE_JWT_SIGNING_KEY on another \
                 instance: set the same value here, or run `tollgate jwt rotate`"
            );
        }
        Ok(keys)
    }

    /// Retires every current key and makes a new one (`tollgate jwt rotate`): its key id.
    pub async fn rotate(db: &Db) -> anyhow::Result<String> {
        let now = wall_now();
        let der = generate()?;
        let public = public_of(&der)?;
        let kid = kid_of(&public);
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_on(&mut tx, &kid, &public, Some(&der), now).await?;
        tx.commit().await?;
        Ok(kid)
    }

    /// The configured key `kid` becomes the only current one (inserted when new, public half
    /// only: its private half stays in the setting).
    async fn make_current(&self, kid: &str, public: &[u8], now: i64) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid <> $2",
        )
        .bind(now)
        .bind(kid)
        .execute(&mut *tx)
        .await?;
        // A key brought back counts as new: it waits to sign like one.
        let existing = sqlx::query(
            "UPDATE signing_keys SET retired_at = NULL, created_at = $2 \
             WHERE kid = $1 AND retired_at IS NOT NULL",
        )
        .bind(kid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if existing.rows_affected() == 0 {
            insert_on(&mut tx, kid, public, None, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert(
        &self,
        kid: &str,
        public: &[u8],
        der: Option<&[u8]>,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut conn = self.db.pool.acquire().await?;
        insert_on(&mut conn, kid, public, der, now).await
    }

    /// How long after its retirement a key is still published and trusted, in seconds.
    pub fn retired_window(&self) -> i64 {
        self.retired_window
    }

    async fn read_table(&self) -> sqlx::Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, public_key, private_key, created_at, retired_at FROM signing_keys \
             ORDER BY CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END, created_at DESC, kid DESC",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let engine = base64::engine::general_purpose::STANDARD;
        Ok(rows
            .into_iter()
            .filter_map(|(kid, public, private, created_at, retired_at)| {
                let private = match private {
                    Some(p) => Some(engine.decode(p).ok()?),
                    None => self
                        .configured
                        .as_ref()
                        .filter(|(k, _)| *k == kid)
                        .map(|(_, der)| der.clone()),
                };
                Some(StoredKey {
                    public: engine.decode(public).ok()?,
                    kid,
                    private,
                    created_at,
                    retired_at,
                })
            })
            .collect())
    }

    async fn reload(&self) -> sqlx::Result<()> {
        let keys = self.read_table().await?;
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeySet {
            keys,
            loaded_at: Instant::now(),
        });
        Ok(())
    }

    fn current_set(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the table again if the set is older than `every` (one reader at a time; the others
    /// go on with the set they have).
    async fn refresh_if_older(&self, every: Duration) -> sqlx::Result<()> {
        if self.current_set().loaded_at.elapsed() < every {
            return Ok(());
        }
        let Ok(_guard) = self.reloading.try_lock() else {
            return Ok(());
        };
        if self.current_set().loaded_at.elapsed() < every {
            return Ok(());
        }
        self.reload().await
    }

    /// The key `kid`, trusted now: from the set, else (a key new to this instance, or one it
    /// holds as retired that another instance brought back) from the table read again, at most
    /// once a second; requests that arrive during that read wait for it rather than judge by
    /// the old set.
    async fn trusted_key(&self, kid: &str) -> sqlx::Result<Option<StoredKey>> {
        let trusted = |k: StoredKey| self.trusted(&k, wall_now()).then_some(k);
        if let Some(key) = self.find(kid).and_then(trusted) {
            return Ok(Some(key));
        }
        let _guard = self.reloading.lock().await;
        if self.current_set().loaded_at.elapsed() >= UNKNOWN_KID_RELOAD_EVERY {
            self.reload().await?;
        }
        Ok(self.find(kid).and_then(trusted))
    }

    /// The key tokens are signed with now: of the trusted keys this instance can sign with, the
    /// first (current keys first, newest first) published for [`PUBLISH_AHEAD_SECS`]; with none
    /// that old, the one published longest (at a first start, the only one).
    fn signing_key(&self) -> Option<StoredKey> {
        let now = wall_now();
        let set = self.current_set();
        let mut usable = set
            .keys
            .iter()
            .filter(|k| k.private.is_some() && self.trusted(k, now));
        let longest = usable.clone().min_by_key(|k| k.created_at);
        usable
            .find(|k| k.created_at <= now - PUBLISH_AHEAD_SECS)
            .or(longest)
            .cloned()
    }

    /// True when `key` is still trusted at `now` (wall-clock seconds).
    fn trusted(&self, key: &StoredKey, now: i64) -> bool {
        key.retired_at
            .is_none_or(|at| now < at + self.retired_window)
    }

    /// Signs `claims` as an access token.
    pub async fn sign<C: Serialize>(&self, claims: &C) -> anyhow::Result<String> {
        self.refresh_if_older(RELOAD_EVERY).await?;
        let key = self
            .signing_key()
            .context("no JWT signing key this instance can use")?;
        let header = Header {
            typ: Some(ACCESS_TOKEN_TYP.into()),
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::EdDSA)
        };
        let private = key.private.as_deref().unwrap_or_default();
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ed_der(private),
        )?)
    }

    /// The claims of `token` when it is an access token signed by a trusted key of ours, for
    /// `issuer` and `audience`; `None` for anything else. Expiry is the caller's to check (by
    /// tollgate's clock).
    pub async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> sqlx::Result<Option<C>> {
        if names_critical_extensions(token) {
            return Ok(None);
        }
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Ok(None);
        }
        let Some(kid) = header.kid else {
            return Ok(None);
        };
        self.refresh_if_older(RELOAD_EVERY).await?;
        let Some(key) = self.trusted_key(&kid).await? else {
            return Ok(None);
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        // Expiry is checked by the caller against tollgate's clock; tollgate sets no `nbf`, and
        // one in the future is refused.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        Ok(
            jsonwebtoken::decode::<C>(token, &DecodingKey::from_ed_der(&key.public), &validation)
                .ok()
                .map(|data| data.claims),
        )
    }

    fn find(&self, kid: &str) -> Option<StoredKey> {
        self.current_set()
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// The published key set (RFC 7517): every key still trusted, current first.
    pub async fn jwks(&self) -> sqlx::Result<Value> {
        self.refresh_if_older(RELOAD_EVERY).await?;
        let now = wall_now();
        let keys: Vec<Value> = self
            .current_set()
            .keys
            .iter()
            .filter(|k| self.trusted(k, now))
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&k.public),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Keys retired so long ago that no token they signed is alive: deleted.
    pub async fn delete_retired(db: &Db, retired_window: i64) -> sqlx::Result<u64> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1")
            .bind(wall_now() - retired_window)
            .execute(&db.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn insert_on(
    conn: &mut sqlx::AnyConnection,
    kid: &str,
    public: &[u8],
    der: Option<&[u8]>,
    now: i64,
) -> sqlx::Result<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, public_key, private_key, created_at) \
         VALUES ($1, 'EdDSA', $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(kid)
    .bind(engine.encode(public))
    .bind(der.map(|d| engine.encode(d)))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// True when the token's header has `crit`: tollgate understands no JWS extension, and RFC 7515
/// says a token naming one it does not understand is refused.
fn names_critical_extensions(token: &str) -> bool {
    let Some(Ok(header)) = token.split('.').next().map(|h| URL_SAFE_NO_PAD.decode(h)) else {
        return false;
    };
    serde_json::from_slice::<Value>(&header).is_ok_and(|h| h.get("crit").is_some())
}
