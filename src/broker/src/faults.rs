//! Fault injection for tests of a whole cell (`fault.injection.enable`, off by default).
//!
//! `POST /v1/faults/isolate` on the admin endpoint cuts this broker off from its peers and
//! from the metadata quorum, as a network partition would, while its clients can still reach
//! it: its follower fetches stop, peers' fetches from it are dropped, its heartbeats and
//! controller requests fail and the quorum's metadata no longer reaches it. `DELETE` heals.
//! Every seam checks [`Faults::isolated`]; with injection off nothing can turn it on.
//!
//! `PUT /v1/faults/disk` with `{"bytes_per_second": N}` makes this broker's disk a slow one:
//! produce appends to the log queue behind each other as if the device wrote N bytes a second
//! (each waits, without holding a thread, until the bytes queued ahead of it would be
//! written), so append times grow with the load as on a saturated device, and a lone append is
//! not slowed. Follower appends are not slowed.
//! `DELETE` restores the real disk.
//!
//! `PUT /v1/faults/cpu` with `{"burn_ms_per_request": N}` makes every tenant request cost N ms
//! of real CPU on the thread that handles it (a busy loop inside the request, so it counts as
//! the tenant's request time and holds the worker as an expensive request would), to drive
//! the broker into CPU overload. `DELETE` stops it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Faults {
    enabled: bool,
    isolated: AtomicBool,
    disk: Mutex<Option<SlowDisk>>,
    /// CPU burned per tenant request, µs (0: none).
    burn_us: std::sync::atomic::AtomicU64,
}

/// A simulated device: its bandwidth, and when (on the broker's clock) it has written what
/// was queued so far.
#[derive(Debug, Clone, Copy)]
struct SlowDisk {
    bytes_per_second: u64,
    busy_until: Option<Instant>,
}

impl Faults {
    pub fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            isolated: AtomicBool::new(false),
            disk: Mutex::new(None),
            burn_us: Default::default(),
        }
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

    /// Slows the disk to `bytes_per_second` (None: the real disk again); false (and no change)
    /// when injection is off.
    pub fn set_slow_disk(&self, bytes_per_second: Option<u64>) -> bool {
        if !self.enabled {
            return false;
        }
        *self.disk.lock() =
            bytes_per_second.filter(|b| *b > 0).map(|b| SlowDisk { bytes_per_second: b, busy_until: None });
        tracing::warn!(?bytes_per_second, "fault injection: slow disk");
        true
    }

    /// How long an append of `bytes` at `now` waits on the slow disk (None: not slowed).
    pub fn disk_delay(&self, bytes: usize, now: Instant) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let mut disk = self.disk.lock();
        let d = disk.as_mut()?;
        // The append waits for the writes queued ahead of it; its own bytes then hold up the
        // next one (as a device behind a write-back cache: a lone write is not slowed).
        let start = d.busy_until.map_or(now, |b| b.max(now));
        d.busy_until = Some(start + Duration::from_secs_f64(bytes as f64 / d.bytes_per_second as f64));
        Some(start - now)
    }
}

impl Faults {
    /// Burns `burn_ms` of CPU on every tenant request from now (0: none); false (and no change)
    /// when injection is off.
    pub fn set_cpu_burn(&self, burn_ms: u64) -> bool {
        if !self.enabled {
            return false;
        }
        self.burn_us.store(burn_ms.saturating_mul(1000), Ordering::Release);
        tracing::warn!(burn_ms, "fault injection: CPU burned per tenant request");
        true
    }

    /// Spins for the injected CPU cost of a request, if any (on purpose on the calling thread).
    pub fn burn_cpu(&self) {
        if !self.enabled {
            return;
        }
        let us = self.burn_us.load(Ordering::Acquire);
        if us == 0 {
            return;
        }
        let until = Instant::now() + Duration::from_micros(us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_disk_queues_appends_behind_each_other() {
        let f = Faults::new(true);
        let t0 = Instant::now();
        assert_eq!(f.disk_delay(1000, t0), None, "the real disk");
        assert!(f.set_slow_disk(Some(1000)));
        assert_eq!(f.disk_delay(500, t0), Some(Duration::ZERO), "a lone append is not slowed");
        assert_eq!(f.disk_delay(500, t0), Some(Duration::from_millis(500)), "behind the first");
        assert_eq!(f.disk_delay(100, t0), Some(Duration::from_millis(1000)), "behind both");
        // The queue drains with time.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(f.disk_delay(100, later), Some(Duration::ZERO));
        assert_eq!(f.disk_delay(100, later), Some(Duration::from_millis(100)));
        assert!(f.set_slow_disk(None));
        assert_eq!(f.disk_delay(100, later), None);
    }

    #[test]
    fn nothing_slows_the_disk_with_injection_off() {
        let f = Faults::new(false);
        assert!(!f.set_cpu_burn(1000));
        let t = Instant::now();
        f.burn_cpu();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(!f.set_slow_disk(Some(1)));
        assert_eq!(f.disk_delay(1 << 20, Instant::now()), None);
    }
}
