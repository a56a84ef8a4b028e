//! Nodes: real `weir node` processes on 127.0.0.1 with their own data
//! directories, talked to over QUIC with mutual TLS by the real CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{stderr, weir};

/// A running `weir node start`; killed with SIGKILL when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) addr: String,
}

impl Node {
    pub(crate) fn start(dir: &Path, data: &str) -> Result<Node, String> {
        Self::start_with(dir, data, &[])
    }

    fn start_with(dir: &Path, data: &str, env: &[(&str, &str)]) -> Result<Node, String> {
        Self::start_at(dir, data, "127.0.0.1:0", env)
    }

    /// A node listening on `listen` (a restart on the address it had).
    pub(crate) fn start_at(
        dir: &Path,
        data: &str,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Result<Node, String> {
        Self::start_args(dir, data, listen, &[], env)
    }

    /// A node listening on `listen` with more arguments to `weir node start`.
    pub(crate) fn start_args(
        dir: &Path,
        data: &str,
        listen: &str,
        more: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Node, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command.envs(env.iter().copied());
        Self::spawn(command, dir, data, listen, more)
    }

    /// A node in the network namespace `ns` (made with `ip netns`).
    pub(crate) fn start_in(
        ns: &str,
        dir: &Path,
        data: &str,
        listen: &str,
        more: &[&str],
    ) -> Result<Node, String> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_weir")]);
        Self::spawn(command, dir, data, listen, more)
    }

    /// `weir ARGS --node ADDR` run inside network namespace `ns`, where
    /// a member cut off from the others still answers.
    pub(crate) fn weir_in(&self, ns: &str, dir: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_weir")])
            .args(args)
            .args(["--node", &self.addr])
            .current_dir(dir)
            .output()
            .expect("run weir in a namespace")
    }

    fn spawn(
        mut command: Command,
        dir: &Path,
        data: &str,
        listen: &str,
        more: &[&str],
    ) -> Result<Node, String> {
        let fixed;
        let listen = match listen.strip_suffix(":0") {
            Some(host) => {
                fixed = format!("{host}:{}", unused_port(host));
                fixed.as_str()
            }
            None => listen,
        };
        let mut child = command
            .args([
                "node", "start", "--data", data, "--listen", listen, "--certs", "certs", "--files",
                ".",
            ])
            .args(more)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        match line.trim().strip_prefix("weir node listening on ") {
            Some(addr) => {
                // What the node logs goes to `DATA.log` beside its data
                // directory: a pipe nobody reads would stall it once full.
                if let (Some(mut err), Ok(mut log)) = (
                    child.stderr.take(),
                    // Appended: a member restarted keeps what it logged before.
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join(format!("{data}.log"))),
                ) {
                    std::thread::spawn(move || std::io::copy(&mut err, &mut log));
                }
                Ok(Node {
                    addr: addr.to_string(),
                    child,
                })
            }
            None => {
                let out = child.wait_with_output().expect("wait");
                Err(stderr(&out))
            }
        }
    }

    /// `weir ARGS --node ADDR` in `dir`.
    pub(crate) fn weir(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--node", &self.addr]);
        weir(&all, dir)
    }

    /// Stops the node as Ctrl-C does (it closes its database cleanly).
    pub(crate) fn stop(mut self) {
        self.signal("-INT");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the node did not stop on SIGINT");
    }

    /// Stops the process where it stands (`kill -STOP`), as a stall of
    /// its machine does: it answers nothing until [`Node::resume`].
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run on from where it stood (`kill -CONT`).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([which, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {which} {pid}");
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

/// A UDP port on `host` that nothing holds, below the kernel's range of
/// ephemeral ports. A node asked for port 0 would get one from that range,
/// and once killed its port could go to any client's socket or another
/// test's node before the node restarts at its address; ports below the
/// range are only ever given out here. Each test process starts at its own
/// offset so that test binaries run side by side rarely meet.
fn unused_port(host: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 100) * (SPAN / 100),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::UdpSocket::bind((host, port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no unused UDP port on {host} between {LOW} and {}",
        LOW + SPAN
    );
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `WEIR_TEST_KEEP_DIRS` set, the directory (data, logs, outputs)
/// outlives the test, for a look after a failure; its path is printed.
pub(crate) fn cluster() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("WEIR_TEST_KEEP_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("the test's directory, kept: {}", dir.path().display());
    }
    let out = weir(&["cluster", "init", "--dir", "certs"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(out.status.success(), "weir failed: {}", stderr(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create_clicks(node: &Node, dir: &Path) {
    ok(&node.weir(
        dir,
        &[
            "stream",
            "create",
            "clicks",
            "--columns",
            "user:utf8,url:utf8,ts:int64",
            "--time",
            "ts",
        ],
    ));
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn clicks(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"user\":\"u{}\",\"url\":\"/p/{i}\",\"ts\":{}}}\n",
                i % 7,
                1000 + i
            )
        })
        .collect()
}

fn read_all(node: &Node, dir: &Path) -> Vec<String> {
    ok(&node.weir(dir, &["stream", "read", "clicks", "--from", "0"]))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ingest_is_durable_validated_and_readable_over_mutual_tls() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    write(d, "good.jsonl", &clicks(0, 3));
    let out = ok(&node.weir(d, &["ingest", "clicks", "good.jsonl"]));
    assert!(out.contains("3 events stored durably in `clicks`"), "{out}");

    // A request with bad rows is refused as a whole, naming file, line and column.
    let bad = format!(
        "{}{}\nnot json\n{}",
        clicks(10, 1).trim_end(),
        "\n{\"user\":\"x\",\"url\":\"/\",\"ts\":\"late\"}",
        clicks(11, 1)
    );
    write(d, "bad.jsonl", &bad);
    let out = node.weir(d, &["ingest", "clicks", "bad.jsonl"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("nothing was stored: 2 bad row(s)"), "{err}");
    assert!(
        err.contains("bad.jsonl:2: column `ts`: expected int64, found a string \"late\""),
        "{err}"
    );
    assert!(err.contains("bad.jsonl:3: invalid JSON"), "{err}");

    let lines = read_all(&node, d);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        r#"{"_seq":0,"_start":1000,"_end":1001,"user":"u0","url":"/p/0","ts":1000}"#
    );

    // Unknown streams are named, with the ones that exist.
    let out = node.weir(d, &["ingest", "nope", "good.jsonl"]);
    assert!(
        stderr(&out).contains("no stream `nope` (known streams: clicks)"),
        "{}",
        stderr(&out)
    );

    // A request over the size limit is refused naming the limit (a sparse
    // file: nothing of it is read).
    let huge = std::fs::File::create(d.join("huge.jsonl")).expect("create");
    huge.set_len((1 << 30) + 1).expect("set_len");
    let out = node.weir(d, &["ingest", "clicks", "huge.jsonl"]);
    assert!(
        stderr(&out).contains("one ingest request takes at most 1024 MiB"),
        "{}",
        stderr(&out)
    );

    // A client whose certificate is not from the cluster CA is refused.
    ok(&weir(&["cluster", "init", "--dir", "other"], d));
    std::fs::create_dir(d.join("mixed")).expect("mkdir");
    for (from, name) in [
        ("certs", "ca.pem"),
        ("other", "client.pem"),
        ("other", "client.key"),
    ] {
        std::fs::copy(d.join(from).join(name), d.join("mixed").join(name)).expect("copy");
    }
    let out = node.weir(d, &["stream", "list", "--certs", "mixed"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused this client"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn acknowledged_events_survive_kill_9_and_requests_are_all_or_nothing() {
    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    let mut acknowledged = 0;
    for round in 0..5 {
        // One acknowledged request, then one in flight while the node is killed.
        write(d, "acked.jsonl", &clicks(acknowledged, 500));
        ok(&node.weir(d, &["ingest", "clicks", "acked.jsonl"]));
        acknowledged += 500;
        write(d, "inflight.jsonl", &clicks(100_000 + round * 1000, 1000));
        let inflight = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["ingest", "clicks", "inflight.jsonl", "--node", &node.addr])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest");
        std::thread::sleep(std::time::Duration::from_millis(20 * round as u64));
        node.kill9();
        // The in-flight client lost its node; it is not waited for.
        let mut inflight = inflight;
        let _ = inflight.kill();
        let _ = inflight.wait();
        node = Node::start(d, "data").expect("node restarts");
        let lines = read_all(&node, d);
        let acked_seen: usize = (0..acknowledged)
            .filter(|i| {
                lines
                    .iter()
                    .any(|l| l.contains(&format!("\"url\":\"/p/{i}\",")))
            })
            .count();
        assert_eq!(
            acked_seen, acknowledged,
            "round {round}: acknowledged events lost"
        );
        // An in-flight request is stored whole or not at all.
        for r in 0..=round {
            let first = 100_000 + r * 1000;
            let n = (first..first + 1000)
                .filter(|i| {
                    lines
                        .iter()
                        .any(|l| l.contains(&format!("\"url\":\"/p/{i}\",")))
                })
                .count();
            assert!(
                n == 0 || n == 1000,
                "round {round}: request {r} half-stored ({n} of 1000)"
            );
        }
    }
}

#[test]
fn an_ingest_in_flight_when_the_node_dies_is_retried_and_stored_once() {
    let seed = super::jobs::crash_seed("ingest retry test");
    let mut rng = super::jobs::Rng(seed);
    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    let addr = node.addr.clone();
    create_clicks(&node, d);
    let rounds = 6;
    for round in 0..rounds {
        let file = format!("part-{round}.jsonl");
        write(d, &file, &clicks(round * 2000, 2000));
        let client = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["ingest", "clicks", &file, "--node", &addr])
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ingest");
        std::thread::sleep(std::time::Duration::from_millis(rng.below(120)));
        node.kill9();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(300)));
        node = Node::start_at(d, "data", &addr, &[]).expect("node restarts on its address");
        // The client reconnects by itself and finishes.
        let out = client.wait_with_output().expect("ingest ends");
        let text = ok(&out);
        assert!(
            text.contains("2000 events stored durably")
                || text.contains("2000 events already stored"),
            "seed {seed} round {round}: {text}"
        );
    }
    // Every event exactly once, although some requests reached the node twice.
    let lines = read_all(&node, d);
    let mut seen = std::collections::HashMap::new();
    for line in &lines {
        let url = line
            .split("\"url\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a url");
        *seen.entry(url.to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), rounds * 2000, "seed {seed}: every event stored");
    assert!(
        seen.values().all(|n| *n == 1),
        "seed {seed}: no event stored twice"
    );
    // Running a finished command again stores nothing either.
    let again = ok(&node.weir(d, &["ingest", "clicks", "part-0.jsonl"]));
    assert!(again.contains("already stored"), "{again}");
    assert_eq!(read_all(&node, d).len(), rounds * 2000);
    // A producer numbering its requests: a lower sequence than one stored is refused.
    write(d, "seq.jsonl", &clicks(900_000, 3));
    let mut args = vec![
        "ingest",
        "clicks",
        "seq.jsonl",
        "--producer",
        "app",
        "--sequence",
        "5",
    ];
    ok(&node.weir(d, &args));
    let again = ok(&node.weir(d, &args));
    assert!(again.contains("already stored"), "{again}");
    args[6] = "4";
    let out = node.weir(d, &args);
    assert!(
        !out.status.success() && stderr(&out).contains("already stored sequence 5"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_all(&node, d).len(), rounds * 2000 + 3);
}

#[test]
fn a_stream_larger_than_a_frame_and_a_row_of_70_mb_read_back_whole() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    let huge = "h".repeat(70 << 20);
    let mut text = clicks(0, 5);
    text.push_str(&format!(
        "{{\"user\":\"big\",\"url\":\"{huge}\",\"ts\":9000}}\n"
    ));
    text.push_str(&clicks(5, 5));
    write(d, "big.jsonl", &text);
    ok(&node.weir(d, &["ingest", "clicks", "big.jsonl"]));
    let out = ok(&node.weir(d, &["stream", "read", "clicks", "--from", "0"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 11, "every event, none cut");
    let big = lines
        .iter()
        .find(|l| l.contains("\"user\":\"big\""))
        .expect("the big row");
    assert!(big.len() > 70 << 20 && big.contains(&huge), "the whole row");
    assert!(lines[10].contains("\"url\":\"/p/9\""), "{}", lines[10]);
}

#[test]
fn a_damaged_database_stops_the_node_with_a_clear_error() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    write(d, "good.jsonl", &clicks(0, 100));
    ok(&node.weir(d, &["ingest", "clicks", "good.jsonl"]));
    node.kill9();
    let db = d.join("data").join("node.redb");
    let bytes = std::fs::read(&db).expect("read db");
    std::fs::write(&db, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = Node::start(d, "data")
        .err()
        .expect("the node refuses to start");
    assert!(err.contains("node.redb is damaged"), "{err}");
    assert!(err.contains("Weir did not modify it"), "{err}");
    assert!(!err.contains("panicked"), "no panic output: {err}");
    assert_eq!(std::fs::read(&db).expect("read").len(), bytes.len() / 2);
}

/// Flips one bit in every copy of `needle` in the node's database file.
fn flip_in_database(d: &Path, needle: &[u8]) {
    let db = d.join("data").join("node.redb");
    let mut bytes = std::fs::read(&db).expect("read db");
    let mut flipped = 0;
    for i in 0..bytes.len().saturating_sub(needle.len()) {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + needle.len() - 4] ^= 0x01;
            flipped += 1;
        }
    }
    assert!(flipped > 0, "the string is stored as is");
    std::fs::write(&db, &bytes).expect("write db");
}

/// A node with stream `clicks` holding 100 events at seq 0 and one event
/// with user `marker-user-QQQQ` at seq 1.
fn node_with_marker(d: &Path) -> Node {
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    write(d, "a.jsonl", &clicks(0, 100));
    ok(&node.weir(d, &["ingest", "clicks", "a.jsonl"]));
    write(
        d,
        "b.jsonl",
        "{\"user\":\"marker-user-QQQQ\",\"url\":\"/x\",\"ts\":5000}\n",
    );
    ok(&node.weir(d, &["ingest", "clicks", "b.jsonl"]));
    write(d, "c.jsonl", &clicks(200, 10));
    ok(&node.weir(d, &["ingest", "clicks", "c.jsonl"]));
    assert_eq!(read_all(&node, d).len(), 111);
    node
}

#[test]
fn a_damaged_byte_inside_the_database_is_an_error_never_data() {
    // Stopped cleanly: the damaged entry fails its checksum when read.
    let dir = cluster();
    let d = dir.path();
    node_with_marker(d).stop();
    flip_in_database(d, b"marker-user-QQQQ");
    let node = Node::start(d, "data").expect("node starts");
    let out = node.weir(d, &["stream", "read", "clicks", "--from", "0"]);
    assert!(!out.status.success(), "damage is not served as data");
    let err = stderr(&out);
    assert!(
        err.contains("node.redb is damaged: entry seq 1 of stream `clicks` fails its checksum"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("marker-user-QQQP"), "{text}");
    // What is after it still reads.
    let rest = ok(&node.weir(d, &["stream", "read", "clicks", "--from", "2"]));
    assert_eq!(rest.lines().count(), 10, "{rest}");
    drop(node);

    // The newest entry of a stream is read at start: its damage stops the node.
    let dir = cluster();
    let d = dir.path();
    let node = node_with_marker(d);
    write(
        d,
        "z.jsonl",
        "{\"user\":\"last-user-ZZZZ\",\"url\":\"/z\",\"ts\":9000}\n",
    );
    ok(&node.weir(d, &["ingest", "clicks", "z.jsonl"]));
    node.stop();
    flip_in_database(d, b"last-user-ZZZZ");
    let err = Node::start(d, "data")
        .err()
        .expect("the node refuses to start");
    assert!(
        err.contains("node.redb is damaged: entry seq 3 of stream `clicks` fails its checksum"),
        "{err}"
    );

    // Killed: redb drops a newest transaction that fails its checksums and
    // falls back to the one before; the acknowledged event would be gone, so
    // the node refuses to start instead.
    let dir = cluster();
    let d = dir.path();
    node_with_marker(d).kill9();
    flip_in_database(d, b"marker-user-QQQQ");
    let err = Node::start(d, "data")
        .err()
        .expect("the node refuses to start");
    assert!(err.contains("node.redb is damaged"), "{err}");
    assert!(!err.contains("panicked"), "no panic output: {err}");
}

#[test]
fn a_full_disk_stops_ingest_with_the_reason_and_loses_nothing_acknowledged() {
    let dir = cluster();
    let d = dir.path();
    // Commit 1 creates the stream, commits 2 and 3 are two ingests; then the "disk is full".
    let node =
        Node::start_with(d, "data", &[("WEIR_TEST_FAIL_AFTER_COMMITS", "3")]).expect("node starts");
    create_clicks(&node, d);
    for i in 0..2 {
        write(d, "part.jsonl", &clicks(i * 10, 10));
        ok(&node.weir(d, &["ingest", "clicks", "part.jsonl"]));
    }
    write(d, "part.jsonl", &clicks(20, 10));
    for _ in 0..2 {
        let out = node.weir(d, &["ingest", "clicks", "part.jsonl"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("accepts no writes until it restarts"), "{err}");
        assert!(err.contains("no space left on device"), "{err}");
    }
    // Reads still work, and show exactly the acknowledged events.
    assert_eq!(read_all(&node, d).len(), 20);
    node.kill9();
    let node = Node::start(d, "data").expect("node restarts");
    assert_eq!(read_all(&node, d).len(), 20);
    ok(&node.weir(d, &["ingest", "clicks", "part.jsonl"]));
    assert_eq!(read_all(&node, d).len(), 30);
}

#[test]
fn a_full_disk_is_ridden_out_and_the_node_resumes_once_space_is_freed() {
    let dir = cluster();
    let d = dir.path();
    let marker = d.join("disk-is-full");
    let node = Node::start_with(
        d,
        "data",
        &[("WEIR_TEST_DISK_FULL_WHILE", &marker.display().to_string())],
    )
    .expect("node starts");
    create_clicks(&node, d);
    write(d, "a.jsonl", &clicks(0, 10));
    ok(&node.weir(d, &["ingest", "clicks", "a.jsonl"]));
    std::fs::write(&marker, "").expect("the disk fills up");
    write(d, "b.jsonl", &clicks(10, 10));
    let out = node.weir(d, &["ingest", "clicks", "b.jsonl"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no space left on device")
            && err.contains("restarts by itself once space is freed"),
        "{err}"
    );
    std::fs::remove_file(&marker).expect("space is freed");
    // The node notices and resumes by itself; ingest works again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = node.weir(d, &["ingest", "clicks", "b.jsonl"]);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ingest still refused after space was freed: {}",
            stderr(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let lines = read_all(&node, d);
    assert_eq!(lines.len(), 20, "every acknowledged event once: {lines:?}");
}

#[test]
fn a_following_reader_sees_events_ingested_after_it_started() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    let mut reader = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "stream", "read", "clicks", "--from", "0", "--follow", "--node", &node.addr,
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reader");
    write(d, "a.jsonl", &clicks(0, 5));
    ok(&node.weir(d, &["ingest", "clicks", "a.jsonl"]));
    write(d, "b.jsonl", &clicks(5, 5));
    ok(&node.weir(d, &["ingest", "clicks", "b.jsonl"]));
    let stdout = reader.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => break,
        }
    }
    let _ = reader.kill();
    let _ = reader.wait();
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen[9].contains("\"url\":\"/p/9\""), "{}", seen[9]);
}
