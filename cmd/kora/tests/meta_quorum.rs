//! The metadata quorum with real processes: `kora meta` voters on 127.0.0.1, driven through
//! the `kora meta` commands a user would type.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// The cell's token (one per test process): voters are started with it, and the commands
/// these tests type present it through KORA_TOKEN_FILE.
fn token_file() -> &'static Path {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp").keep();
        let f = dir.join("cell.token");
        std::fs::write(&f, "test-cell-token-0123456789abcdef\n").expect("write token");
        f
    })
}

struct Voter {
    id: u64,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Voter {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self, voters: Option<&str>, extra: &[&str]) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kora"));
        cmd.args(["meta", "--node-id", &self.id.to_string(), "--listen", &self.addr(), "--data-dir"])
            .arg(&self.dir)
            // The broker these tests register never heartbeats: keep it unfenced.
            .args(["--broker-session-timeout-ms", "600000"])
            .arg("--token-file")
            .arg(token_file())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(v) = voters {
            cmd.args(["--voters", v]);
        }
        self.child = Some(cmd.spawn().expect("kora meta"));
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Voter {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cell {
    voters: Vec<Voter>,
    list: String,
    _tmp: tempfile::TempDir,
}

impl Cell {
    fn start(n: u64, extra: &[&str]) -> Cell {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut voters: Vec<Voter> = (1..=n)
            .map(|id| Voter { id, port: free_port(), dir: tmp.path().join(format!("v{id}")), child: None })
            .collect();
        let list = voters.iter().map(|v| format!("{}@{}", v.id, v.addr())).collect::<Vec<_>>().join(",");
        for v in voters.iter_mut() {
            v.start(Some(&list), extra);
        }
        Cell { voters, list, _tmp: tmp }
    }

    fn all_addrs(&self) -> String {
        self.voters.iter().map(Voter::addr).collect::<Vec<_>>().join(",")
    }

    fn voter(&mut self, id: u64) -> &mut Voter {
        self.voters.iter_mut().find(|v| v.id == id).expect("voter")
    }
}

fn kora(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(args)
        .env("KORA_TOKEN_FILE", token_file())
        .output()
        .expect("kora");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(addr: &str) -> Option<serde_json::Value> {
    let (ok, out, _) = kora(&["meta", "status", "--voter", addr, "--output", "json"]);
    if !ok {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// Waits until `addr` reports a leader other than `not`; returns the leader id.
fn wait_leader(addr: &str, not: Option<u64>, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        if let Some(s) = status(addr) {
            if let Some(l) = s["leader"].as_u64() {
                if Some(l) != not {
                    return l;
                }
            }
        }
        assert!(start.elapsed() < within, "no new leader seen by {addr} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create_topic(voters: &str, name: &str) -> Result<(), String> {
    create_topic_with(voters, name, 3)
}

fn create_topic_with(voters: &str, name: &str, partitions: u32) -> Result<(), String> {
    let p = partitions.to_string();
    let (ok, out, err) = kora(&["meta", "create-topic", "--voter", voters, name, "--partitions", &p]);
    if ok {
        assert!(out.contains(name), "{out}");
        Ok(())
    } else {
        Err(err)
    }
}

/// Creates a topic, retrying while leadership is settling (503 "retry" answers).
fn create_topic_retrying(voters: &str, name: &str, within: Duration) {
    let start = Instant::now();
    loop {
        match create_topic(voters, name) {
            Ok(()) => return,
            Err(e) => {
                assert!(start.elapsed() < within, "create {name}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Registers a broker record through a voter's controller API (what `kora broker` does at
/// start), so topics have somewhere to place replicas. Retries while there is no leader.
fn register_broker(voters: &str, id: i32) {
    use std::io::{Read, Write};
    let body = format!(
        r#"{{"op":"RegisterBroker","registration":{{"broker_id":{id},"incarnation":"00000000-0000-0000-0000-00000000000{id}","rack":null,"host":"127.0.0.1","port":9092,"admin":""}}}}"#
    );
    let start = Instant::now();
    loop {
        for v in voters.split(',') {
            let Ok(mut c) = std::net::TcpStream::connect(v) else { continue };
            let req = format!(
                "POST /v1/controller HTTP/1.1\r\nHost: {v}\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                std::fs::read_to_string(token_file()).expect("token").trim(),
                body.len()
            );
            let mut reply = String::new();
            if c.write_all(req.as_bytes()).is_ok()
                && c.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/1.1 200")
                && reply.contains(r#""Ok""#)
            {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "could not register broker {id}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn topics(addr: &str) -> Option<u64> {
    status(addr).and_then(|s| s["topics"].as_u64())
}

fn wait_topics(addr: &str, n: u64, within: Duration) {
    let start = Instant::now();
    while topics(addr) != Some(n) {
        assert!(start.elapsed() < within, "{addr} has {:?} topics, expected {n}", topics(addr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dir_has_files(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(false)
}

#[test]
fn three_voters_elect_replicate_and_survive_losing_the_leader() {
    let mut cell = Cell::start(3, &[]);
    let all = cell.all_addrs();
    let first = cell.voters[0].addr();
    let leader = wait_leader(&first, None, Duration::from_secs(20));
    register_broker(&all, 1);
    create_topic_retrying(&all, "orders", Duration::from_secs(20));
    for v in &cell.voters {
        wait_topics(&v.addr(), 1, Duration::from_secs(10));
        assert!(dir_has_files(&v.dir.join("raft-log")) && dir_has_files(&v.dir.join("state")));
    }
    // Every voter agrees on the cluster id.
    let ids: Vec<String> =
        cell.voters.iter().filter_map(|v| status(&v.addr())).map(|s| s["cluster_id"].to_string()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i == &ids[0] && i.len() > 10), "{ids:?}");

    // kill -9 the leader: the other two elect a new one and keep committing.
    let killed_at = Instant::now();
    cell.voter(leader).kill();
    let survivor = cell.voters.iter().find(|v| v.id != leader).expect("survivor").addr();
    let new_leader = wait_leader(&survivor, Some(leader), Duration::from_secs(10));
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    create_topic_retrying(&all, "payments", Duration::from_secs(20));
    for v in cell.voters.iter().filter(|v| v.id != leader) {
        wait_topics(&v.addr(), 2, Duration::from_secs(10));
    }
    eprintln!("leader {leader} killed; voter {new_leader} leads after {failover:?}");

    // The old leader comes back as a follower and catches up.
    let list = cell.list.clone();
    cell.voter(leader).start(Some(&list), &[]);
    let back = cell.voter(leader).addr();
    wait_topics(&back, 2, Duration::from_secs(20));
    let s = status(&back).expect("status");
    assert_eq!(s["leader"].as_u64(), Some(new_leader));

    // A duplicate is refused by the leader, whichever voter is asked.
    let err = create_topic(&back, "orders").expect_err("duplicate");
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn snapshots_purge_the_log_and_bring_a_new_voter_up_to_date() {
    let mut cell = Cell::start(3, &["--snapshot-entries", "20"]);
    let all = cell.all_addrs();
    wait_leader(&cell.voters[0].addr(), None, Duration::from_secs(20));
    register_broker(&all, 1);
    // Topics of 1,000 partitions each: the image (and so the snapshot) is several MB, more than
    // one HTTP body of the default size, so it must travel in chunks.
    for i in 0..60 {
        let name = format!("t{i}");
        let start = Instant::now();
        while let Err(e) = create_topic_with(&all, &name, 1000) {
            assert!(start.elapsed() < Duration::from_secs(20), "create {name}: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let start = Instant::now();
    loop {
        let s = status(&cell.voters[0].addr()).expect("status");
        if s["snapshot_index"].as_u64().is_some() && s["purged_index"].as_u64().is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no snapshot or purge: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A fourth voter joins an existing quorum: the log it needs is partly purged, so it is
    // brought up to date with a snapshot, then votes.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut v4 = Voter { id: 4, port: free_port(), dir: tmp.path().join("v4"), child: None };
    v4.start(None, &[]);
    let (ok, out, err) = kora(&["meta", "add-voter", "--voter", &all, "--id", "4", "--address", &v4.addr()]);
    assert!(ok, "add-voter: {out} {err}");
    wait_topics(&v4.addr(), 60, Duration::from_secs(60));
    let s = status(&v4.addr()).expect("status");
    assert!(s["voters"].get("4").is_some(), "4 is a voter: {s}");
    assert!(s["snapshot_index"].as_u64().is_some(), "installed from a snapshot: {s}");
    // Remove voter 1: three remain, and they still commit.
    let (ok, out, err) = kora(&["meta", "remove-voter", "--voter", &v4.addr(), "--id", "1"]);
    assert!(ok, "remove-voter: {out} {err}");
    let s = status(&v4.addr()).expect("status");
    let voters: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(s["voters"].clone()).expect("voters");
    assert_eq!(voters.keys().cloned().collect::<Vec<_>>(), vec!["2", "3", "4"]);
    cell.voter(1).kill();
    let rest = format!("{},{}", v4.addr(), cell.voter(2).addr());
    create_topic_retrying(&rest, "after-removal", Duration::from_secs(20));
    wait_topics(&v4.addr(), 61, Duration::from_secs(10));
}

#[test]
fn voter_commands_fail_clearly() {
    // Nothing listens there.
    let (ok, _, err) = kora(&["meta", "status", "--voter", &format!("127.0.0.1:{}", free_port())]);
    assert!(!ok && err.contains("no voter answered"), "{err}");
    let (ok, _, err) =
        kora(&["meta", "--node-id", "1", "--voters", "1@nohostport", "--listen", "127.0.0.1:0"]);
    assert!(!ok && err.contains("expected id@host:port"), "{err}");
    let (ok, _, err) = kora(&["meta", "--listen", "127.0.0.1:0"]);
    assert!(!ok && err.contains("--node-id is required"), "{err}");
}

/// Every call that changes state needs the cell's token: the CLI without it is refused with
/// 401 and says what to do, with another token is refused, and with the right one succeeds.
/// A raw controller request (what a broker sends) without it is refused too.
#[test]
fn state_changes_need_the_operator_token() {
    let cell = Cell::start(1, &[]);
    let addr = cell.voters[0].addr();
    wait_leader(&addr, None, Duration::from_secs(20));
    register_broker(&addr, 1);
    let empty_config = tempfile::tempdir().expect("tmp");
    let run = |token: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kora"));
        cmd.args(["meta", "create-topic", "--voter", &addr, "guarded", "--partitions", "1"])
            .env_remove("KORA_TOKEN_FILE")
            .env("KORA_CONFIG_DIR", empty_config.path());
        if let Some(t) = token {
            cmd.arg("--token-file").arg(t);
        }
        let out = cmd.output().expect("kora");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (ok, err) = run(None);
    assert!(!ok, "created without a token");
    assert!(err.contains("HTTP 401") && err.contains("needs the operator token"), "{err}");
    assert!(err.contains("--token-file"), "the CLI says what to do: {err}");

    let wrong = empty_config.path().join("wrong.token");
    std::fs::write(&wrong, "some-other-cells-token-0123456789").expect("write");
    let (ok, err) = run(Some(&wrong));
    assert!(!ok, "created with another cell's token");
    assert!(err.contains("HTTP 401") && err.contains("not this server's"), "{err}");
    assert_eq!(topics(&addr), Some(0), "nothing was created by refused calls");

    let (ok, err) = run(Some(token_file()));
    assert!(ok, "refused with the right token: {err}");
    wait_topics(&addr, 1, Duration::from_secs(10));

    // A broker's controller request without the token: refused before it reaches the controller.
    use std::io::{Read, Write};
    let body = r#"{"op":"AllocateProducerIds","count":1}"#;
    let mut c = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        c,
        "POST /v1/controller HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reply = String::new();
    c.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
}
