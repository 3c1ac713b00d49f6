//! Quota accounting as pure logic, the way Kafka's quota managers count, for the broker to
//! drive:
//! - [`SampledRate`]: Kafka's `Rate` over a `SampledStat` (`quota.window.num` windows of
//!   `quota.window.size.seconds`), and the throttle time of a rate over its bound;
//! - [`TokenBucket`]: KIP-599's controller mutation quota (burst of `samples × window`);
//! - [`shares`]: how a broker over its safe limit scales every tenant's bound down, the
//!   request-time backpressure factor of a broker short of CPU, and the ingress limit a broker
//!   learns when its disk falls behind;
//! - [`TimeSketch`]: a lock-free count of durations for a quantile once a window.
//!
//! Time is milliseconds on the caller's monotonic clock, passed in: nothing here reads a
//! clock, sleeps, or does I/O, so tests and simulations drive it exactly.
//!
//! Does not: know tenants, requests or the wire protocol (the broker's quota manager does),
//! or decide what a throttle does to a connection (the broker mutes it).

mod bucket;
mod rate;
pub mod shares;
mod sketch;

pub use bucket::TokenBucket;
pub use rate::{RateConfig, SampledRate};
pub use sketch::TimeSketch;
