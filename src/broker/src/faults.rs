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
//! `PUT /v1/faults/network` with `{"bytes_per_second": N}` makes this broker's network a slow
//! one: every response it sends, on every listener, queues behind those sent before it as on a
//! link of N bytes a second (the connection's writer waits until the bytes queued ahead would
//! be on the wire), so responses take longer to leave as the load grows, as on a saturated NIC.
//! `DELETE` restores it.
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
    disk: Mutex<Option<SlowDevice>>,
    link: Mutex<Option<SlowDevice>>,
    /// CPU burned per tenant request, µs (0: none).
    burn_us: std::sync::atomic::AtomicU64,
}

/// A simulated device (a disk or a link): its bandwidth, and when (on the broker's clock) it
/// has done the work queued so far.
#[derive(Debug, Clone, Copy)]
struct SlowDevice {
    bytes_per_second: u64,
    busy_until: Option<Instant>,
}

impl SlowDevice {
    fn new(bytes_per_second: Option<u64>) -> Option<Self> {
        bytes_per_second.filter(|b| *b > 0).map(|b| SlowDevice { bytes_per_second: b, busy_until: None })
    }

    /// How long `bytes` queued at `now` wait for the work ahead of them; they then hold up the
    /// next (as a device behind a write-back cache or a NIC's queue: lone work is not slowed).
    fn queue(&mut self, bytes: usize, now: Instant) -> Duration {
        let start = self.busy_until.map_or(now, |b| b.max(now));
        self.busy_until = Some(start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64));
        start - now
    }
}

impl Faults {
    pub fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            isolated: AtomicBool::new(false),
            disk: Mutex::new(None),
            link: Mutex::new(None),
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

    /// Slows `device` to `bytes_per_second` (None: the real one again); false (and no change)
    /// when injection is off.
    pub fn set_slow(&self, device: Device, bytes_per_second: Option<u64>) -> bool {
        if !self.enabled {
            return false;
        }
        *self.device(device).lock() = SlowDevice::new(bytes_per_second);
        tracing::warn!(?device, ?bytes_per_second, "fault injection: slow device");
        true
    }

    /// How long work of `bytes` at `now` waits on the slow `device` (an append on the disk,
    /// a response on the link); None: not slowed.
    pub fn delay(&self, device: Device, bytes: usize, now: Instant) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        Some(self.device(device).lock().as_mut()?.queue(bytes, now))
    }

    fn device(&self, device: Device) -> &Mutex<Option<SlowDevice>> {
        match device {
            Device::Disk => &self.disk,
            Device::Link => &self.link,
        }
    }
}

/// What a slow-device fault slows: produce appends, or every response sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Disk,
    Link,
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
        assert_eq!(f.delay(Device::Disk, 1000, t0), None, "the real disk");
        assert!(f.set_slow(Device::Disk, Some(1000)));
        assert_eq!(f.delay(Device::Disk, 500, t0), Some(Duration::ZERO), "a lone append is not slowed");
        assert_eq!(f.delay(Device::Disk, 500, t0), Some(Duration::from_millis(500)), "behind the first");
        assert_eq!(f.delay(Device::Disk, 100, t0), Some(Duration::from_millis(1000)), "behind both");
        // The queue drains with time.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(f.delay(Device::Disk, 100, later), Some(Duration::ZERO));
        assert_eq!(f.delay(Device::Disk, 100, later), Some(Duration::from_millis(100)));
        assert!(f.set_slow(Device::Disk, None));
        assert_eq!(f.delay(Device::Disk, 100, later), None);
    }

    #[test]
    fn a_slow_link_queues_responses_apart_from_the_disk() {
        let f = Faults::new(true);
        let t0 = Instant::now();
        assert!(f.set_slow(Device::Link, Some(1000)));
        assert_eq!(f.delay(Device::Link, 1000, t0), Some(Duration::ZERO));
        assert_eq!(f.delay(Device::Link, 10, t0), Some(Duration::from_secs(1)), "behind the first response");
        assert_eq!(f.delay(Device::Disk, 10, t0), None, "the disk is not slowed");
        assert!(f.set_slow(Device::Link, None));
        assert_eq!(f.delay(Device::Link, 10, t0), None);
    }

    #[test]
    fn nothing_slows_the_disk_with_injection_off() {
        let f = Faults::new(false);
        assert!(!f.set_cpu_burn(1000));
        let t = Instant::now();
        f.burn_cpu();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(!f.set_slow(Device::Disk, Some(1)));
        assert_eq!(f.delay(Device::Disk, 1 << 20, Instant::now()), None);
        assert!(!f.set_slow(Device::Link, Some(1)));
        assert_eq!(f.delay(Device::Link, 1 << 20, Instant::now()), None);
    }
}
