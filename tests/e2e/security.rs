//! Certificates, keys and the request protocol as an attacker or a careless
//! operator would meet them.

use std::path::Path;

use super::node::{Node, cluster, ok};
use super::{stderr, weir};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn keys_are_private_and_a_key_others_can_read_is_refused() {
    let dir = cluster();
    let d = dir.path();
    let certs = d.join("certs");
    assert_eq!(mode(&certs), 0o700, "the certificate directory");
    for key in ["ca.key", "node.key", "client.key"] {
        assert_eq!(mode(&certs.join(key)), 0o600, "{key}");
    }
    assert_eq!(
        mode(&certs.join("ca.pem")),
        0o644,
        "certificates are public"
    );

    let node = Node::start(d, "data").expect("node starts");
    ok(&node.weir(d, &["stream", "list"]));
    for (key, identity) in [("admin.key", "admin"), ("client.key", "client")] {
        chmod(&certs.join(key), 0o644);
        let out = node.weir(d, &["stream", "list", "--identity", identity]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{key} is readable by others (mode 0644)"))
                && err.contains("chmod 600"),
            "{err}"
        );
        chmod(&certs.join(key), 0o600);
        ok(&node.weir(d, &["stream", "list", "--identity", identity]));
    }
    drop(node);

    chmod(&certs.join("node.key"), 0o640);
    let err = Node::start(d, "data2")
        .err()
        .expect("the node refuses its key");
    assert!(
        err.contains("node.key is readable by others (mode 0640)"),
        "{err}"
    );
}

#[test]
fn a_malformed_request_gets_an_error_and_the_connection_stays_usable() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    let addr: std::net::SocketAddr = node.addr.parse().expect("address");
    let certs = weir::net::CertDir::new(&d.join("certs"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = weir::net::Client::connect(addr, &certs)
            .await
            .expect("connects");
        for garbage in [
            &b"{\"no_such_request\": 1}"[..],
            b"not json at all",
            b"{\"ingest\": {\"stream\": 7}}",
        ] {
            let mut recv = client.raw(garbage).await.expect("sent");
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                weir::net::read_msg::<weir::net::Response>(&mut recv),
            )
            .await
            .expect("the node answers instead of dropping the request")
            .expect("an answer");
            match answer {
                Some(weir::net::Response::Error { message }) => {
                    assert!(message.contains("malformed request"), "{message}")
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        // The same connection still serves good requests.
        let pong = client
            .call(&weir::net::Request::Ping, None)
            .await
            .expect("ping");
        assert!(matches!(pong, weir::net::Response::Ok { .. }));
        client.close().await;
    });
    ok(&weir(&["stream", "list", "--node", &node.addr], d));
}

#[test]
fn a_client_certificate_may_ingest_and_read_but_not_run_jobs() {
    let dir = cluster();
    let d = dir.path();
    for role in ["node", "admin", "client"] {
        assert!(
            d.join("certs").join(format!("{role}.pem")).exists(),
            "{role}"
        );
    }
    let node = Node::start(d, "data").expect("node starts");
    // The CLI presents admin.pem by default when the directory has one.
    ok(&node.weir(
        d,
        &[
            "stream",
            "create",
            "clicks",
            "--columns",
            "user:utf8,ts:int64",
            "--time",
            "ts",
        ],
    ));
    std::fs::write(d.join("c.jsonl"), "{\"user\":\"a\",\"ts\":1}\n").expect("write");
    let as_client = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--identity", "client"]);
        node.weir(d, &all)
    };
    ok(&as_client(&["ingest", "clicks", "c.jsonl"]));
    assert!(ok(&as_client(&["stream", "read", "clicks"])).contains("\"user\":\"a\""));
    ok(&as_client(&["stream", "list"]));
    ok(&as_client(&["job", "status"]));
    for (args, what) in [
        (&["job", "cancel", "anything"][..], "cancel jobs"),
        (&["stream", "close", "clicks"][..], "close streams"),
        (
            &[
                "stream",
                "create",
                "x",
                "--columns",
                "a:int64",
                "--time",
                "a",
            ][..],
            "create streams",
        ),
    ] {
        let out = as_client(args);
        assert!(!out.status.success(), "{args:?}");
        let e = stderr(&out);
        assert!(
            e.contains("has the role `client`") && e.contains(what),
            "{args:?}: {e}"
        );
    }

    // More certificates: a client of its own, in a directory of its own.
    let issued = ok(&weir(
        &[
            "cluster",
            "issue",
            "reader",
            "--role",
            "client",
            "--out",
            "reader-certs",
        ],
        d,
    ));
    assert!(issued.contains("reader.key"), "{issued}");
    let reader = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--certs", "reader-certs", "--identity", "reader"]);
        node.weir(d, &all)
    };
    ok(&reader(&["stream", "read", "clicks"]));
    let out = reader(&["job", "cancel", "anything"]);
    assert!(
        stderr(&out).contains("has the role `client`"),
        "{}",
        stderr(&out)
    );
    #[cfg(unix)]
    assert_eq!(mode(&d.join("reader-certs").join("reader.key")), 0o600);
}

#[test]
fn job_files_stay_in_the_directories_the_node_gives_them() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let job = |source: &str, sink: &str| {
        format!(
            "name = \"steal\"\n\n[[sources]]\nname = \"k\"\npath = \"{source}\"\nevent_time = \"ts\"\nschema = {{ ts = \"int64\" }}\non_error = \"dead-letter\"\n\n[[sinks]]\ninput = \"k\"\npath = \"{sink}\"\n"
        )
    };
    std::fs::write(d.join("in.jsonl"), "{\"ts\": 1}\n").expect("write");
    let cases = [
        (
            job("certs/node.key", "out.jsonl"),
            "the node's own data or keys",
        ),
        (
            job("data/node.redb", "out.jsonl"),
            "the node's own data or keys",
        ),
        (
            job(
                "in.jsonl",
                &elsewhere.path().join("out.jsonl").display().to_string(),
            ),
            "outside the directories this node gives jobs",
        ),
        (
            job("../../etc/passwd", "out.jsonl"),
            "outside the directories",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(d.join("job.toml"), &text).expect("write");
        let out = node.weir(d, &["job", "submit", "job.toml"]);
        assert!(!out.status.success(), "{text}");
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }
    assert!(!elsewhere.path().join("out.jsonl").exists());
    // Inside, it runs.
    std::fs::write(d.join("job.toml"), job("in.jsonl", "out/k.jsonl")).expect("write");
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
}
