//! Password policy and hashing.
//!
//! Policy after NIST SP 800-63B: a configurable minimum (default 8 characters), at least 64
//! allowed, more than 1024 bytes refused before any hashing (so a huge password cannot buy CPU), no
//! composition rules, no trimming or truncation, NFKC normalisation so the same password typed on
//! two keyboards matches, and a blocklist of the 10,000 most common passwords.
//!
//! Hashing is argon2id with OWASP's parameters by default, as PHC strings. It runs on one thread
//! per core, each reusing its own argon2 memory: a flood of logins queues here instead of
//! spawning unbounded 19 MiB hashes, stalling the async workers or bloating the allocator.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::OnceCell;
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

/// Work for a hashing thread; it gets that thread's reusable argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// How long a hashing thread keeps its argon2 memory with nothing to do. A flood keeps it (one
/// allocation per thread for the whole flood); a quiet server gives it back within a second.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// The jobs waiting for a hashing thread.
#[derive(Default)]
struct Queue {
    state: Mutex<(std::collections::VecDeque<Job>, bool)>,
    ready: std::sync::Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (std::collections::VecDeque<Job>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().0.push_back(job);
        self.ready.notify_one();
    }

    /// The next job; frees `memory` once idle for [`IDLE_RELEASE`]; `None` once the pool is gone.
    fn next(&self, memory: &mut Vec<Block>) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.0.pop_front() {
                return Some(job);
            }
            if state.1 {
                return None;
            }
            if memory.is_empty() {
                state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            } else {
                let (again, waited) = self
                    .ready
                    .wait_timeout(state, IDLE_RELEASE)
                    .unwrap_or_else(|e| e.into_inner());
                state = again;
                if waited.timed_out() && state.0.is_empty() {
                    *memory = Vec::new();
                }
            }
        }
    }
}

/// The pool handles' side of the queue: when the last handle goes, the threads end.
struct Submit(Arc<Queue>);

impl Drop for Submit {
    fn drop(&mut self) {
        self.0.lock().1 = true;
        self.0.ready.notify_all();
    }
}

/// Hashes and verifies passwords on a fixed set of threads, one per core.
///
/// Why not `spawn_blocking`: every new blocking thread makes glibc's allocator grow a new arena,
/// and each argon2 call allocates its 19 MiB afresh, so a login flood left hundreds of MiB resident
/// after it ended. Here the threads are few and fixed, each keeps one block buffer and reuses it
/// for every hash while there is work (given back after `IDLE_RELEASE` without), and the queue
/// in front of them is the bound on concurrent work.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    jobs: Arc<Submit>,
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasherPool {
    /// A pool for `params`, with one hashing thread per core.
    pub fn new(params: Argon2Params) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let queue = Arc::new(Queue::default());
        for i in 0..cores {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory: Vec<Block> = Vec::new();
                    while let Some(job) = queue.next(&mut memory) {
                        // A panicking job fails its own request (its reply is dropped); the
                        // thread lives on, so the pool never ends up with nobody to hash.
                        let run = std::panic::AssertUnwindSafe(|| job(&mut memory));
                        if std::panic::catch_unwind(run).is_err() {
                            memory = Vec::new();
                        }
                    }
                })
                .expect("spawn an argon2 thread");
        }
        let jobs = Arc::new(Submit(queue));
        Self {
            params: Params::new(params.m_kib, params.t, params.p, None)
                .expect("argon2 parameters are validated by Config"),
            jobs,
            dummy: Arc::new(OnceCell::new()),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.0.push(Box::new(move |memory| {
            let _ = tx.send(work(memory));
        }));
        rx.await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("argon2 job dropped")))
    }

    /// Hashes an already-normalised password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        let params = self.params.clone();
        self.run(move |memory| {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let output = compute(&params, password.as_bytes(), &salt, memory)?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)?,
                salt: Some(Salt::new(&salt)?),
                hash: Some(Output::new(&output)?),
            };
            Ok::<_, argon2::password_hash::Error>(phc.to_string())
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
            .run(move |memory| {
                let Ok(parsed) = PasswordHash::new(&phc) else {
                    return (false, false);
                };
                let Ok(params) = Params::try_from(&parsed) else {
                    return (false, false);
                };
                // Only read when `ok`, which requires argon2id: the parameters are what can differ.
                let stale = params.m_cost() != current.m_cost()
                    || params.t_cost() != current.t_cost()
                    || params.p_cost() != current.p_cost();
                let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                    return (false, false);
                };
                let ok = parsed.algorithm.as_str() == "argon2id"
                    && compute(&params, password.as_bytes(), salt.as_ref(), memory)
                        .is_ok_and(|out| bool::from(out.as_slice().ct_eq(expected.as_bytes())));
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

/// argon2id of `password` into a 32-byte output, in `memory` (grown once, then reused).
fn compute(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    memory: &mut Vec<Block>,
) -> Result<Vec<u8>, argon2::password_hash::Error> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let needed = params.block_count();
    if memory.len() < needed {
        if memory.capacity() < needed {
            // Reserve more than glibc's largest dynamic mmap threshold (32 MiB on 64-bit). A
            // block that large is always mmapped and unmapped when freed, so idle threads really
            // give it back; a 19 MiB one would raise the threshold when freed and come from an
            // arena next time, which keeps it. Only the `needed` blocks are ever touched, so
            // only they become resident.
            let unmapped_floor = (33 << 20) / std::mem::size_of::<Block>();
            *memory = Vec::with_capacity(needed.max(unmapped_floor));
        }
        memory.resize(needed, Block::default());
    }
    let mut output = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    argon
        .hash_password_into_with_memory(password, salt, &mut output, &mut memory[..needed])
        .map_err(|_| argon2::password_hash::Error::Crypto)?;
    Ok(output)
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

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_threads_live_on() {
        let pool = PasswordHasherPool::new(Argon2Params {
            m_kib: 64,
            t: 1,
            p: 1,
        });
        // More panics than threads: were a panic to kill its thread, none would be left.
        let limit = std::time::Duration::from_secs(10);
        for _ in 0..8 {
            let failed = pool.run(|_| -> () { panic!("deliberate panic in a test job") });
            let failed = tokio::time::timeout(limit, failed)
                .await
                .expect("no hashing thread left");
            assert!(failed.is_err());
        }
        let hash = tokio::time::timeout(limit, pool.hash("a fine password".into()))
            .await
            .expect("no hashing thread left")
            .unwrap();
        assert_eq!(
            pool.verify("a fine password", Some(&hash)).await.unwrap(),
            Verified::Yes
        );
    }
}
