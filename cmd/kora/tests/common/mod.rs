//! Test harness: runs the real `kora` binary as a child process on 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Kora {
    child: Option<Child>,
    pub bootstrap: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub port: u16,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

/// A port that was free a moment ago (for restarts on the same address). Picked below Linux's
/// ephemeral range (32768-60999), where no outgoing connection takes it as its source port
/// before the broker binds it, and apart from the ports `kora cell up` picks (20000-32000).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()
        as u64
        ^ ((std::process::id() as u64) << 32);
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::AcqRel, Ordering::Acquire);
    for _ in 0..1_000 {
        let mut x = STATE.load(Ordering::Acquire);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        STATE.store(x, Ordering::Release);
        let port = 10_000 + (x % 10_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 10000..20000")
}

impl Kora {
    fn launch(data_dir: Option<&Path>, extra: &[&str], env: &[(&str, &str)]) -> Kora {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = data_dir.map(Path::to_path_buf).unwrap_or_else(|| tmp.path().join("data"));
        let mut k = Kora {
            child: None,
            bootstrap: String::new(),
            admin: String::new(),
            data_dir,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            _tmp: tmp,
        };
        k.spawn();
        k
    }

    pub fn start(extra: &[&str]) -> Kora {
        Self::launch(None, extra, &[])
    }

    /// Like `start`, with the data directory at `data_dir` (e.g. on a special filesystem).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Kora {
        Self::launch(Some(data_dir), extra, &[])
    }

    /// Like `start`, with extra environment variables (object-store settings).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Kora {
        Self::launch(None, extra, env)
    }

    pub fn log_path(&self) -> PathBuf {
        self._tmp.path().join("kora.log")
    }

    fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kora"));
        cmd.arg("--output")
            .arg("json")
            .arg("dev")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn kora");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if !l.trim().is_empty() => l,
            _ => {
                let _ = child.kill();
                panic!(
                    "kora did not start; log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("startup line is JSON");
        self.bootstrap = v["bootstrap"].as_str().expect("bootstrap").to_string();
        self.admin = v["admin"].as_str().expect("admin").to_string();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: a crash, no clean shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let status = c.wait().expect("wait");
            assert!(
                status.success(),
                "kora exited with {status}; log:\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// GET a path on the admin endpoint (plain HTTP/1.0 over a socket: no client dependency).
    pub fn admin_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.admin.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }
}

impl Drop for Kora {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the kora log ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
