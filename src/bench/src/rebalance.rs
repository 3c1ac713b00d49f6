//! `kora bench rebalance`: how long a consumer group takes to assign every partition.
//!
//! Each round uses a fresh group: `members` consumers subscribe at once (formation), then one
//! more joins the stable group (join). A phase is complete when every partition is owned by
//! exactly one member and every member owns at least one; its time is measured from the last
//! subscribe call of the phase. Ownership comes from each consumer's own view after every
//! rebalance callback, so the figure is what applications see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use serde::Serialize;

use crate::{client_config, ensure_topic, BenchError, Progress};

#[derive(Debug, Clone)]
pub struct RebalanceOptions {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub members: usize,
    /// "classic" or "consumer" (KIP-848).
    pub protocol: String,
    pub rounds: usize,
    /// Longest a phase may take before the run fails.
    pub timeout: Duration,
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    pub mode: &'static str,
    pub protocol: String,
    pub members: usize,
    pub partitions: i32,
    /// Per round: ms from the last of `members` subscribes to a complete assignment.
    pub formation_ms: Vec<f64>,
    /// Per round: ms from one more member's subscribe to a complete assignment.
    pub join_ms: Vec<f64>,
    pub formation_median_ms: f64,
    pub join_median_ms: f64,
}

type Owners = Arc<Mutex<BTreeMap<usize, BTreeSet<i32>>>>;

struct Ctx {
    id: usize,
    owners: Owners,
}

impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn post_rebalance(&self, c: &BaseConsumer<Self>, _r: &Rebalance<'_>) {
        let parts: BTreeSet<i32> =
            c.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
        if let Ok(mut o) = self.owners.lock() {
            o.insert(self.id, parts);
        }
    }
}

struct Member {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn start(
    o: &RebalanceOptions,
    group: &str,
    id: usize,
    owners: &Owners,
) -> Result<(Member, Instant), BenchError> {
    let mut cfg = client_config(&o.bootstrap, &o.extra);
    cfg.set("group.id", group).set("group.protocol", &o.protocol).set("client.id", format!("rebalance-{id}"));
    let c: BaseConsumer<Ctx> = cfg.create_with_context(Ctx { id, owners: owners.clone() })?;
    c.subscribe(&[&o.topic])?;
    let subscribed = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s2.load(Ordering::Acquire) {
            let _ = c.poll(Duration::from_millis(20));
        }
    });
    Ok((Member { stop, thread }, subscribed))
}

fn complete(owners: &Owners, members: usize, partitions: i32) -> bool {
    let Ok(o) = owners.lock() else { return false };
    if o.len() < members || o.values().any(BTreeSet::is_empty) {
        return false;
    }
    let mut seen = BTreeSet::new();
    o.values().flatten().all(|p| seen.insert(*p)) && seen.len() == partitions as usize
}

fn wait_complete(
    o: &RebalanceOptions,
    owners: &Owners,
    members: usize,
    from: Instant,
) -> Result<f64, BenchError> {
    loop {
        if complete(owners, members, o.partitions) {
            return Ok(from.elapsed().as_secs_f64() * 1e3);
        }
        if from.elapsed() > o.timeout {
            return Err(BenchError::Setup(format!(
                "{members} members did not own all {} partitions within {:?}",
                o.partitions, o.timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

pub fn rebalance(o: &RebalanceOptions, progress: Arc<Progress>) -> Result<RebalanceReport, BenchError> {
    if o.members == 0 || o.partitions <= o.members as i32 {
        return Err(BenchError::Setup("need at least one member and more partitions than members".into()));
    }
    let partitions = ensure_topic(&o.bootstrap, &o.extra, &o.topic, o.partitions)?;
    let o = RebalanceOptions { partitions, ..o.clone() };
    progress.target.store(o.rounds as u64, Ordering::Relaxed);
    let (mut formation_ms, mut join_ms) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let group = format!("kora-bench-rebalance-{}-{round}-{}", o.protocol, std::process::id());
        let owners: Owners = Arc::default();
        let mut members = Vec::with_capacity(o.members + 1);
        let mut last = Instant::now();
        for id in 0..o.members {
            let (m, t) = start(&o, &group, id, &owners)?;
            members.push(m);
            last = t;
        }
        let result = wait_complete(&o, &owners, o.members, last).and_then(|f| {
            formation_ms.push(f);
            let (m, t) = start(&o, &group, o.members, &owners)?;
            members.push(m);
            let j = wait_complete(&o, &owners, o.members + 1, t)?;
            join_ms.push(j);
            Ok(())
        });
        for m in &members {
            m.stop.store(true, Ordering::Release);
        }
        for m in members {
            let _ = m.thread.join();
        }
        result?;
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(RebalanceReport {
        mode: "rebalance",
        protocol: o.protocol.clone(),
        members: o.members,
        partitions: o.partitions,
        formation_median_ms: median(&formation_ms),
        join_median_ms: median(&join_ms),
        formation_ms,
        join_ms,
    })
}
