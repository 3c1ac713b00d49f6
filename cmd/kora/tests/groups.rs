//! Consumer groups with librdkafka (the rdkafka crate) against a real `kora dev` process:
//! the classic protocol (eager and cooperative-sticky, static membership) and KIP-848
//! (group.protocol=consumer), committed offsets across kill -9.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Kora;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const COMMIT_EVERY: usize = 50;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics([&t], &AdminOptions::new()).await.expect("create_topics") {
        r.expect("topic created");
    }
}

fn produce(bootstrap: &str, topic: &str, from: usize, n: usize) {
    let p: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in from..from + n {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assign(usize, BTreeSet<i32>),
    Revoke(usize, BTreeSet<i32>),
}

/// A consumer's context: commits what it consumed before giving partitions up, and records
/// every assignment change.
struct Ctx {
    id: usize,
    events: Arc<Mutex<Vec<Event>>>,
}

fn parts(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            if tpl.count() > 0 {
                let _ = c.commit_consumer_state(CommitMode::Sync);
            }
            self.events.lock().expect("events").push(Event::Revoke(self.id, parts(tpl)));
        }
    }
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            self.events.lock().expect("events").push(Event::Assign(self.id, parts(tpl)));
        }
    }
}

/// What every consumer thread shares.
#[derive(Default)]
struct Shared {
    /// (partition, offset, consumer) in delivery order.
    delivered: Mutex<Vec<(i32, i64, usize)>>,
    events: Arc<Mutex<Vec<Event>>>,
    count: AtomicUsize,
}

struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("consumer thread");
        }
    }
}

fn start_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    id: usize,
    shared: &Arc<Shared>,
    extra: &[(&str, &str)],
) -> Member {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", format!("member-{id}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let consumer: BaseConsumer<Ctx> =
        cfg.create_with_context(Ctx { id, events: shared.events.clone() }).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, shared) = (stop.clone(), shared.clone());
    let thread = std::thread::spawn(move || {
        let mut since_commit = 0;
        while !stop2.load(Ordering::Acquire) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    shared.delivered.lock().expect("delivered").push((m.partition(), m.offset(), id));
                    shared.count.fetch_add(1, Ordering::AcqRel);
                    since_commit += 1;
                    if since_commit >= COMMIT_EVERY {
                        let _ = consumer.commit_consumer_state(CommitMode::Async);
                        since_commit = 0;
                    }
                }
                Some(Err(e)) => eprintln!("member {id}: {e}"),
                None => {}
            }
        }
        // Dropping the consumer closes it: revoke (and commit), then LeaveGroup.
        drop(consumer);
    });
    Member { stop, thread: Some(thread) }
}

/// The current assignment per member, from the event log.
fn assignments(events: &[Event], cooperative: bool) -> BTreeMap<usize, BTreeSet<i32>> {
    let mut cur: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new();
    for e in events {
        match e {
            Event::Assign(id, p) => {
                let set = cur.entry(*id).or_default();
                if !cooperative {
                    set.clear();
                }
                set.extend(p);
            }
            Event::Revoke(id, p) => {
                let set = cur.entry(*id).or_default();
                for x in p {
                    set.remove(x);
                }
            }
        }
    }
    cur
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every partition owned by exactly one of `members`, and every member owning some.
fn owned_exactly_once(shared: &Shared, members: &[usize], partitions: i32, cooperative: bool) -> bool {
    let a = assignments(&shared.events.lock().expect("events"), cooperative);
    let mut seen = BTreeSet::new();
    for id in members {
        if a.get(id).is_none_or(BTreeSet::is_empty) {
            return false;
        }
        for p in a.get(id).into_iter().flatten() {
            if !seen.insert(*p) {
                return false;
            }
        }
    }
    seen.len() == partitions as usize
}

/// Checks that every offset below `ends[p]` was delivered, and that a partition handed from
/// one member to another restarted no earlier than COMMIT_EVERY records before where the
/// previous owner stopped. Returns the number of duplicates.
fn check_delivery(shared: &Shared, ends: &BTreeMap<i32, i64>) -> usize {
    let delivered = shared.delivered.lock().expect("delivered");
    let mut per: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for &(p, o, id) in delivered.iter() {
        per.entry(p).or_default().push((o, id));
    }
    let mut dups = 0;
    for (&p, &end) in ends {
        let seq = per.remove(&p).unwrap_or_default();
        let got: BTreeSet<i64> = seq.iter().map(|x| x.0).collect();
        let missing: Vec<i64> = (0..end).filter(|o| !got.contains(o)).take(5).collect();
        assert!(missing.is_empty(), "partition {p}: offsets {missing:?} (and maybe more) never delivered");
        dups += seq.len() - got.len();
        // Within one owner offsets only grow; at a handover the new owner starts at most
        // COMMIT_EVERY behind where the old one stopped (the uncommitted window).
        let mut prev: Option<(i64, usize)> = None;
        for &(o, id) in &seq {
            if let Some((po, pid)) = prev {
                if pid == id {
                    assert!(o > po, "partition {p}: member {id} went back from {po} to {o}");
                } else {
                    assert!(o <= po + 1, "partition {p}: gap at handover {pid}@{po} -> {id}@{o}");
                    assert!(
                        po + 1 - o <= COMMIT_EVERY as i64,
                        "partition {p}: {id} restarted at {o}, {} behind {pid}@{po}",
                        po + 1 - o
                    );
                }
            }
            prev = Some((o, id));
        }
    }
    dups
}

fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
            (p, hi)
        })
        .collect()
}

/// Three members over 12 partitions; one leaves and another joins while records keep coming.
async fn group_flow(protocol: &str, broker_args: &[&str], extra: &[(&str, &str)]) {
    let k = Kora::start(broker_args);
    let topic = format!("orders-{protocol}");
    let group = format!("billing-{protocol}");
    create_topic(&k.bootstrap, &topic, 12).await;
    let bs = k.bootstrap.clone();
    let t2 = topic.clone();
    tokio::task::spawn_blocking(move || produce(&bs, &t2, 0, 20_000)).await.expect("produce");

    let shared = Arc::new(Shared::default());
    let mut cfg: Vec<(&str, &str)> = vec![("group.protocol", protocol)];
    cfg.extend_from_slice(extra);
    let m0 = start_member(&k.bootstrap, &group, &topic, 0, &shared, &cfg);
    let m1 = start_member(&k.bootstrap, &group, &topic, 1, &shared, &cfg);
    let m2 = start_member(&k.bootstrap, &group, &topic, 2, &shared, &cfg);
    let cooperative = protocol == "consumer";
    wait_until("three members to own all 12 partitions", Duration::from_secs(60), || {
        owned_exactly_once(&shared, &[0, 1, 2], 12, cooperative)
    });
    let a = assignments(&shared.events.lock().expect("events"), cooperative);
    for id in 0..3 {
        assert_eq!(a[&id].len(), 4, "member {id} owns {:?}", a[&id]);
    }
    wait_until("some records consumed", Duration::from_secs(60), || {
        shared.count.load(Ordering::Acquire) > 5_000
    });

    // Records keep arriving while the group changes.
    let bs = k.bootstrap.clone();
    let t2 = topic.clone();
    let producer = std::thread::spawn(move || {
        for round in 0..10 {
            produce(&bs, &t2, 20_000 + round * 2_000, 2_000);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    m0.stop();
    wait_until("two members to take over", Duration::from_secs(60), || {
        owned_exactly_once(&shared, &[1, 2], 12, cooperative)
    });
    let m3 = start_member(&k.bootstrap, &group, &topic, 3, &shared, &cfg);
    wait_until("the new member to be assigned", Duration::from_secs(60), || {
        owned_exactly_once(&shared, &[1, 2, 3], 12, cooperative)
    });
    producer.join().expect("producer");
    let ends = end_offsets(&k.bootstrap, &topic, 12);
    let total: i64 = ends.values().sum();
    assert_eq!(total, 40_000);
    wait_until("every record consumed", Duration::from_secs(90), || {
        let d = shared.delivered.lock().expect("delivered");
        let distinct: BTreeSet<(i32, i64)> = d.iter().map(|x| (x.0, x.1)).collect();
        distinct.len() as i64 >= total
    });
    let dups = check_delivery(&shared, &ends);
    eprintln!("{protocol}: {total} records, {dups} delivered twice (commit every {COMMIT_EVERY})");
    for m in [m1, m2, m3] {
        m.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_group_shares_partitions_and_survives_leave_and_join() {
    group_flow("classic", &[], &[("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "500")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_group_shares_partitions_and_survives_leave_and_join() {
    group_flow("consumer", &["--set", "group.consumer.heartbeat.interval.ms=500"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_it_must() {
    let k = Kora::start(&[]);
    create_topic(&k.bootstrap, "sticky", 12).await;
    let shared = Arc::new(Shared::default());
    let cfg = [
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
    ];
    let members: Vec<Member> =
        (0..3).map(|id| start_member(&k.bootstrap, "sticky-g", "sticky", id, &shared, &cfg)).collect();
    wait_until("three members", Duration::from_secs(60), || {
        owned_exactly_once(&shared, &[0, 1, 2], 12, true)
    });
    // Let any follow-up rebalance settle before taking the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let before = assignments(&shared.events.lock().expect("events"), true);
    let mark = shared.events.lock().expect("events").len();
    let m3 = start_member(&k.bootstrap, "sticky-g", "sticky", 3, &shared, &cfg);
    wait_until("four members", Duration::from_secs(60), || {
        owned_exactly_once(&shared, &[0, 1, 2, 3], 12, true)
    });
    let after = assignments(&shared.events.lock().expect("events"), true);
    for id in 0..3 {
        let kept = before[&id].intersection(&after[&id]).count();
        assert_eq!(kept, after[&id].len(), "member {id} gained partitions it did not have");
        assert!(kept >= 3, "member {id} kept only {kept} of {:?}", before[&id]);
    }
    assert_eq!(after[&3].len(), 3);
    let events = shared.events.lock().expect("events")[mark..].to_vec();
    let revoked: usize = events
        .iter()
        .map(|e| match e {
            Event::Revoke(_, p) => p.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(revoked, 3, "only the moved partitions are revoked: {events:?}");
    m3.stop();
    for m in members {
        m.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_within_session_timeout_does_not_rebalance() {
    let k = Kora::start(&[]);
    create_topic(&k.bootstrap, "static", 6).await;
    let shared = Arc::new(Shared::default());
    let base = [("session.timeout.ms", "15000"), ("heartbeat.interval.ms", "300")];
    let mut with_instance = base.to_vec();
    with_instance.push(("group.instance.id", "billing-1"));
    let other = start_member(&k.bootstrap, "static-g", "static", 0, &shared, &base);
    let s1 = start_member(&k.bootstrap, "static-g", "static", 1, &shared, &with_instance);
    wait_until("two members", Duration::from_secs(60), || owned_exactly_once(&shared, &[0, 1], 6, false));
    std::thread::sleep(Duration::from_secs(2));
    let before = assignments(&shared.events.lock().expect("events"), false);
    let mark = shared.events.lock().expect("events").len();
    // A static member closes without LeaveGroup (KIP-345); its replacement comes back with the
    // same group.instance.id within the session timeout.
    s1.stop();
    let s2 = start_member(&k.bootstrap, "static-g", "static", 2, &shared, &with_instance);
    wait_until("the restarted static member's assignment", Duration::from_secs(30), || {
        assignments(&shared.events.lock().expect("events"), false).get(&2).is_some_and(|p| !p.is_empty())
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = assignments(&shared.events.lock().expect("events"), false);
    assert_eq!(after[&2], before[&1], "the static member gets its old partitions back");
    let other_events: Vec<Event> = shared.events.lock().expect("events")[mark..]
        .iter()
        .filter(|e| matches!(e, Event::Assign(0, _) | Event::Revoke(0, _)))
        .cloned()
        .collect();
    assert!(other_events.is_empty(), "the other member was rebalanced: {other_events:?}");
    s2.stop();
    other.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_metadata_survive_kill9() {
    let mut k = Kora::start(&[]);
    create_topic(&k.bootstrap, "resume", 4).await;
    let bs = k.bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&bs, "resume", 0, 4_000)).await.expect("produce");
    let consumer = |bs: &str| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bs)
            .set("group.id", "resume-g")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer")
    };
    let c = consumer(&k.bootstrap);
    c.subscribe(&["resume"]).expect("subscribe");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let start = Instant::now();
    while next.values().map(|&o| o as usize).sum::<usize>() < 1_000 {
        assert!(start.elapsed() < Duration::from_secs(60), "consuming stalled");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    // Every partition gets a commit (one record each in one batch), consumed or not.
    for p in 0..4 {
        next.entry(p).or_insert(0);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &next {
        tpl.add_partition_offset("resume", p, Offset::Offset(o)).expect("tpl");
        if let Some(mut e) = tpl.find_partition("resume", p) {
            e.set_metadata(format!("batch-{p}"));
        }
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);

    k.kill9();
    k.restart();

    let c = consumer(&k.bootstrap);
    let mut want = TopicPartitionList::new();
    for p in 0..4 {
        want.add_partition("resume", p);
    }
    let committed = c.committed_offsets(want, Duration::from_secs(10)).expect("committed");
    for e in committed.elements() {
        let expected = next.get(&e.partition()).copied();
        match expected {
            Some(o) => {
                assert_eq!(e.offset(), Offset::Offset(o), "partition {}", e.partition());
                assert_eq!(e.metadata(), format!("batch-{}", e.partition()));
            }
            None => assert_eq!(e.offset(), Offset::Invalid),
        }
    }
    c.subscribe(&["resume"]).expect("subscribe");
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let mut count = 0;
    let start = Instant::now();
    while count < 4_000 - next.values().sum::<i64>() as usize {
        assert!(start.elapsed() < Duration::from_secs(60), "resumed consuming stalled at {count}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            first.entry(m.partition()).or_insert(m.offset());
            count += 1;
        }
    }
    for (p, o) in first {
        assert_eq!(o, next.get(&p).copied().unwrap_or(0), "partition {p} resumed at the committed offset");
    }
}
