//! The base every capability stands on, built once at start-up: settings, the database, this
//! process's cache, the clock, the public URL and the templates.

use std::sync::Arc;

use url::Url;

use crate::{cache::Cache, clock::Clock, config::Config, db::Db};

/// Settings, storage, cache, clock, public URL and templates.
pub struct Base {
    /// Settings.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// This process's cache of sessions and members; writers forget what they change.
    pub cache: Arc<Cache>,
    /// The clock (shared with the simulator in development).
    pub clock: Clock,
    /// The public URL (configured, or `http://127.0.0.1:<port>`).
    pub base_url: Url,
    /// Origins accepted by the Origin check.
    pub allowed_origins: Vec<String>,
    /// Page and email templates.
    pub templates: minijinja::Environment<'static>,
}

impl Base {
    /// True when the public URL is https (cookies get `Secure` and a name prefix).
    pub fn https(&self) -> bool {
        self.base_url.scheme() == "https"
    }

    /// The session cookie's name: `__Host-` on https, `__Secure-` when shared with subdomains.
    pub fn session_cookie_name(&self) -> &'static str {
        match (self.https(), self.config.cookie_domain.is_some()) {
            (true, false) => "__Host-tollgate_session",
            (true, true) => "__Secure-tollgate_session",
            (false, _) => "tollgate_session",
        }
    }

    /// Commits `tx`, then forgets `user_id` in this process's cache (every write that changes a
    /// user, their sessions or their subscriptions ends this way or calls
    /// [`Cache::forget_user`] after its commit).
    pub async fn commit_for(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
        user_id: &str,
    ) -> sqlx::Result<()> {
        tx.commit().await?;
        self.cache.forget_user(user_id);
        Ok(())
    }
}
