//! A configuration rebuilt when the files it was built from change.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::material::{self, Snapshot};
use crate::{TlsError, TlsSettings};

pub(crate) type Build<T> = fn(&TlsSettings, &Snapshot) -> Result<T, TlsError>;

/// A TLS acceptor or connector (`T`, cheap to clone) built from [`TlsSettings`], and rebuilt
/// from them when the files they name change: see [`crate::ServerTls`] and
/// [`crate::ClientTls`].
///
/// Each connection takes a clone of the current `T` under a read lock held for an instant
/// and keeps the configuration it started with; a reload builds the new `T` first and swaps
/// it in only when it is valid, so it affects only connections made after it.
pub struct Reloadable<T> {
    role: &'static str,
    settings: TlsSettings,
    build: Build<T>,
    current: RwLock<T>,
    /// What `current` was built from; the lock also keeps two reloads from racing.
    loaded: Mutex<Snapshot>,
}

impl<T: Clone + Send + Sync + 'static> Reloadable<T> {
    /// Reads the files and builds; blocking.
    pub(crate) fn build(
        role: &'static str,
        settings: TlsSettings,
        build: Build<T>,
    ) -> Result<Self, TlsError> {
        let snapshot = material::read(&settings)?;
        let current = build(&settings, &snapshot)?;
        Ok(Self { role, settings, build, current: RwLock::new(current), loaded: Mutex::new(snapshot) })
    }

    /// The settings this was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    pub(crate) fn current(&self) -> T {
        self.current.read().clone()
    }

    /// Re-reads the keystore and truststore files; if any byte changed, builds a new
    /// configuration for the next connections and returns `true`. New files that cannot be
    /// used (half written, a key of another certificate, garbage, gone) leave the current
    /// configuration in place and return the error, to be logged. Inline settings never
    /// change: `Ok(false)` without I/O. Blocking.
    ///
    /// Contents are compared rather than modification times, which can be coarse, or kept
    /// by tools that copy files; the files are a few kilobytes.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        if material::files(&self.settings).is_empty() {
            return Ok(false);
        }
        let mut loaded = self.loaded.lock();
        let snapshot = material::read(&self.settings)?;
        if snapshot == *loaded {
            return Ok(false);
        }
        let built = (self.build)(&self.settings, &snapshot)?;
        *self.current.write() = built;
        *loaded = snapshot;
        Ok(true)
    }

    /// Calls [`Reloadable::reload_if_changed`] every `interval`, on a blocking thread so no
    /// file is read on an async worker, until `stop` holds `true` or its sender is dropped.
    /// Logs each reload and each distinct failure once (a broken file would otherwise be
    /// logged every interval until fixed). Returns at once when every setting is inline.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        if material::files(&self.settings).is_empty() {
            return;
        }
        let role = self.role;
        // tokio's interval panics on zero.
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is immediate, and the files were just read.
        let mut last_error: Option<String> = None;
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            tokio::select! {
                changed = stop.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
                _ = ticker.tick() => {}
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    last_error = None;
                    tracing::info!(role, "TLS certificates reloaded from changed files");
                }
                Ok(Ok(false)) => last_error = None,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(role, error = %message, "TLS files changed but cannot be used; keeping the previous certificates");
                        last_error = Some(message);
                    }
                }
                Err(e) => tracing::warn!(role, error = %e, "TLS reload task failed"),
            }
        }
    }
}
