//! The time seam. Libraries never read the time or start a timer directly (`SystemTime::now()`,
//! `Instant::now()`, `tokio::time::{sleep, timeout, interval}`): they take a `Clock`, so tests
//! can drive time (retention, segment.ms, fetch waits) deterministically, and a simulation can
//! drive every wait of a broker.
//!
//! A clock has two readings: wall time (`now_ms`, Unix milliseconds as Kafka timestamps are; it
//! may move back) and monotonic time (`now`, for deadlines and durations; it never moves back).
//! Sleeps, [`timeout`], [`timeout_at`] and [`Ticker`] run on monotonic time.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A sleep started by a [`Clock`]; it owns what it needs, so it may outlive the borrow.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where libraries read the time and wait for it.
pub trait Clock: Send + Sync + Debug {
    /// Wall-clock milliseconds since the Unix epoch, as Kafka timestamps are.
    fn now_ms(&self) -> i64;

    /// Monotonic time: never moves back. For deadlines and elapsed times.
    fn now(&self) -> Instant;

    /// Completes once `d` has passed on this clock's monotonic time.
    fn sleep(&self, d: Duration) -> Sleep;

    /// Completes once this clock's monotonic time reaches `deadline` (at once if it has).
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    /// Monotonic time passed since `earlier` (zero if `earlier` is later than now).
    fn elapsed(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// The real clock: the system's wall clock, `Instant`, and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)))
    }
}

/// What a [`ManualClock`] shows: its wall time, and how far its monotonic time has moved since
/// the clock was made.
#[derive(Debug, Clone, Copy)]
struct Times {
    wall_ms: i64,
    elapsed: Duration,
}

/// A clock that only moves when told to; for tests of time-driven logic.
///
/// Its monotonic time starts at an `Instant` taken when it is made and moves forward by every
/// advance (`set_ms` to an earlier time moves the wall clock back, the monotonic time not at
/// all). A sleep completes only once the clock has been moved to or past its deadline, never
/// by itself.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    /// Every move is sent here; sleeps watch it.
    times: watch::Sender<Times>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        let (times, _) = watch::channel(Times { wall_ms: now_ms, elapsed: Duration::ZERO });
        Self { base: Instant::now(), times }
    }

    pub fn advance_ms(&self, delta_ms: i64) {
        self.times.send_modify(|t| {
            t.wall_ms = t.wall_ms.wrapping_add(delta_ms);
            if delta_ms > 0 {
                t.elapsed = t.elapsed.saturating_add(Duration::from_millis(delta_ms as u64));
            }
        });
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.times.send_modify(|t| {
            let forward = now_ms.saturating_sub(t.wall_ms);
            if forward > 0 {
                t.elapsed = t.elapsed.saturating_add(Duration::from_millis(forward as u64));
            }
            t.wall_ms = now_ms;
        });
    }

    /// A sleep until the monotonic time is `deadline` past `base`.
    fn sleep_until_elapsed(&self, deadline: Duration) -> Sleep {
        let mut rx = self.times.subscribe();
        Box::pin(async move {
            loop {
                if rx.borrow_and_update().elapsed >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone, so it will never be advanced: the time never comes.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.times.borrow().wall_ms
    }

    fn now(&self) -> Instant {
        self.base + self.times.borrow().elapsed
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.times.borrow().elapsed.saturating_add(d);
        self.sleep_until_elapsed(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.sleep_until_elapsed(deadline.saturating_duration_since(self.base))
    }
}

/// A [`timeout`] or [`timeout_at`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// Runs `f` for at most `d` of `clock`'s time. As with `tokio::time::timeout`, the deadline is
/// fixed when this is called, and `f` is polled before the deadline is checked (a ready `f`
/// wins even with a zero `d`).
pub fn timeout<F: Future>(
    clock: &dyn Clock,
    d: Duration,
    f: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    race(f, clock.sleep(d))
}

/// Runs `f` until `clock`'s monotonic time reaches `deadline`.
pub fn timeout_at<F: Future>(
    clock: &dyn Clock,
    deadline: Instant,
    f: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    race(f, clock.sleep_until(deadline))
}

async fn race<F: Future>(f: F, mut sleep: Sleep) -> Result<F::Output, Elapsed> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Ticks every `period` of a clock's time, the first tick one period after it is made. A tick
/// the caller was too busy to take is skipped, not made up in a burst: the next one is then a
/// period after the late tick (tokio's `MissedTickBehavior::Delay`). Dropping a `tick()` before
/// it completes loses nothing (it can be raced in `select!`).
#[derive(Debug)]
pub struct Ticker {
    clock: Arc<dyn Clock>,
    period: Duration,
    next: Instant,
}

impl Ticker {
    pub fn new(clock: Arc<dyn Clock>, period: Duration) -> Self {
        let next = clock.now() + period;
        Self { clock, period, next }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        self.clock.sleep_until(self.next).await;
        let now = self.clock.now();
        self.next = if now >= self.next + self.period { now + self.period } else { self.next + self.period };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Lets spawned tasks run until they wait again (the runtime is current-thread).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Spawns `f` and reports whether it has completed.
    fn watch_done<F: Future<Output = ()> + Send + 'static>(f: F) -> Arc<AtomicBool> {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        tokio::spawn(async move {
            f.await;
            d.store(true, Ordering::SeqCst);
        });
        done
    }

    #[test]
    fn monotonic_time_moves_only_forward() {
        let c = ManualClock::new(10_000);
        let t0 = c.now();
        c.advance_ms(250);
        assert_eq!(c.now_ms(), 10_250);
        assert_eq!(c.now() - t0, Duration::from_millis(250));
        // The wall clock may be set back; monotonic time stays where it was.
        c.set_ms(5_000);
        assert_eq!(c.now_ms(), 5_000);
        assert_eq!(c.now() - t0, Duration::from_millis(250));
        c.advance_ms(-100);
        assert_eq!(c.now_ms(), 4_900);
        assert_eq!(c.now() - t0, Duration::from_millis(250));
        // Forward again: both move by the same amount.
        c.set_ms(5_900);
        assert_eq!(c.now() - t0, Duration::from_millis(1_250));
        assert_eq!(c.elapsed(t0), Duration::from_millis(1_250));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_manual_sleep_completes_only_once_the_clock_passes_its_deadline() {
        let c = Arc::new(ManualClock::new(0));
        let done = watch_done(c.sleep(Duration::from_millis(100)));
        settle().await;
        assert!(!done.load(Ordering::SeqCst), "no time has passed");
        // Real time does not count.
        tokio::time::sleep(Duration::from_millis(150)).await;
        settle().await;
        assert!(!done.load(Ordering::SeqCst), "real time passed, the clock's did not");
        c.advance_ms(99);
        settle().await;
        assert!(!done.load(Ordering::SeqCst), "1 ms short of the deadline");
        // Moving the wall clock back and forth to the same place moves monotonic time only by
        // the forward step.
        c.set_ms(0);
        settle().await;
        assert!(!done.load(Ordering::SeqCst), "the wall clock went back");
        c.advance_ms(1);
        settle().await;
        assert!(done.load(Ordering::SeqCst), "the deadline was reached");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn manual_sleeps_wake_in_deadline_order_and_sleep_until_uses_the_same_time() {
        let c = Arc::new(ManualClock::new(0));
        let short = watch_done(c.sleep(Duration::from_millis(10)));
        let long = watch_done(c.sleep_until(c.now() + Duration::from_millis(30)));
        let zero = watch_done(c.sleep(Duration::ZERO));
        settle().await;
        assert!(zero.load(Ordering::SeqCst), "a zero sleep is due at once");
        assert!(!short.load(Ordering::SeqCst) && !long.load(Ordering::SeqCst));
        c.advance_ms(20);
        settle().await;
        assert!(short.load(Ordering::SeqCst));
        assert!(!long.load(Ordering::SeqCst));
        c.set_ms(30);
        settle().await;
        assert!(long.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_manual_timeout_fires_only_when_the_clock_is_advanced() {
        let c = Arc::new(ManualClock::new(0));
        let fired = Arc::new(AtomicBool::new(false));
        let (f, c2) = (fired.clone(), c.clone());
        let task = tokio::spawn(async move {
            let r = timeout(&*c2, Duration::from_millis(500), std::future::pending::<()>()).await;
            f.store(r == Err(Elapsed), Ordering::SeqCst);
        });
        settle().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        settle().await;
        assert!(!task.is_finished(), "the timeout fired without the clock moving");
        c.advance_ms(499);
        settle().await;
        assert!(!task.is_finished(), "the timeout fired early");
        c.advance_ms(1);
        settle().await;
        assert!(task.is_finished() && fired.load(Ordering::SeqCst), "the timeout fired at its deadline");

        // A future that completes first wins, even with no time left.
        assert_eq!(timeout(&*c, Duration::ZERO, async { 7 }).await, Ok(7));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let at = timeout_at(&*c, c.now() + Duration::from_millis(10), rx);
        let _ = tx.send(3);
        assert_eq!(at.await.map(|r| r.ok()), Ok(Some(3)));
        // A deadline already passed: the timeout fires at once.
        let past = c.now();
        c.advance_ms(5);
        assert_eq!(timeout_at(&*c, past, std::future::pending::<()>()).await, Err(Elapsed));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_system_clock_sleeps_and_times_out_in_real_time() {
        let c = SystemClock;
        let t0 = c.now();
        c.sleep(Duration::from_millis(20)).await;
        assert!(c.elapsed(t0) >= Duration::from_millis(20));
        let r = timeout(&c, Duration::from_millis(20), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert!(c.elapsed(t0) >= Duration::from_millis(40));
        assert_eq!(timeout_at(&c, c.now() + Duration::from_secs(5), async { 1 }).await, Ok(1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_ticker_ticks_each_period_and_skips_missed_ticks() {
        let c = Arc::new(ManualClock::new(0));
        let t0 = c.now();
        let ticks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut ticker, seen, c2) =
            (Ticker::new(c.clone(), Duration::from_millis(100)), ticks.clone(), c.clone());
        tokio::spawn(async move {
            loop {
                ticker.tick().await;
                if let Ok(mut s) = seen.lock() {
                    s.push(c2.elapsed(t0).as_millis());
                }
            }
        });
        let got = || ticks.lock().map(|s| s.clone()).unwrap_or_default();
        settle().await;
        assert!(got().is_empty(), "the first tick is a period away");
        c.advance_ms(99);
        settle().await;
        assert!(got().is_empty());
        c.advance_ms(1);
        settle().await;
        assert_eq!(got(), vec![100]);
        // Far past several ticks: one tick, and the next a full period later.
        c.advance_ms(350);
        settle().await;
        assert_eq!(got(), vec![100, 450]);
        c.advance_ms(99);
        settle().await;
        assert_eq!(got(), vec![100, 450]);
        c.advance_ms(1);
        settle().await;
        assert_eq!(got(), vec![100, 450, 550]);
    }
}
