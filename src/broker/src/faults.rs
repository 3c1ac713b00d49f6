//! Fault injection for tests of a whole cell (`fault.injection.enable`, off by default).
//!
//! `POST /v1/faults/isolate` on the admin endpoint cuts this broker off from its peers and
//! from the metadata quorum, as a network partition would, while its clients can still reach
//! it: its follower fetches stop, peers' fetches from it are dropped, its heartbeats and
//! controller requests fail and the quorum's metadata no longer reaches it. `DELETE` heals.
//! Every seam checks [`Faults::isolated`]; with injection off nothing can turn it on.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    enabled: bool,
    isolated: AtomicBool,
}

impl Faults {
    pub fn new(enabled: bool) -> Self {
        Faults { enabled, isolated: AtomicBool::new(false) }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether this broker is cut off from its peers and the quorum.
    pub fn isolated(&self) -> bool {
        self.isolated.load(Ordering::Acquire)
    }

    /// Sets the isolation; false (and no change) when injection is off.
    pub fn set_isolated(&self, on: bool) -> bool {
        if !self.enabled {
            return false;
        }
        self.isolated.store(on, Ordering::Release);
        tracing::warn!(isolated = on, "fault injection: isolation from peers and quorum");
        true
    }
}
