//! File sinks of `weir run` at the paths users point them at: links,
//! devices and pipes are written through, never replaced; sinks in one
//! directory never share a temporary file; a discard sink writes nothing.

use std::io::Read;
use std::path::Path;

use weir::testkit::udf_component;

use super::{Job, stderr};

/// The one-stage job with its sink lines replaced by `sinks`.
fn job_with_sinks(job: &Job, sinks: &str) {
    job.items(50);
    job.one_stage(&udf_component("panic_on_row"), "poison = -1", "fail");
    let text = job.read("job.toml");
    let head = text.split("[[sinks]]").next().expect("the job");
    job.write("job.toml", &format!("{head}{sinks}"));
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(unix)]
#[test]
fn a_sink_at_a_link_writes_its_target_and_the_link_stays() {
    let job = Job::new();
    let d = job.path();
    std::fs::create_dir(d.join("real")).expect("mkdir");
    std::os::unix::fs::symlink("real/out.jsonl", d.join("out.jsonl")).expect("link");
    std::os::unix::fs::symlink("/dev/null", d.join("null.jsonl")).expect("link");
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"out.jsonl\"\n\n[[sinks]]\ninput = \"udf\"\npath = \"null.jsonl\"\n",
    );
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(is_link(&d.join("out.jsonl")), "the link is still a link");
    assert!(is_link(&d.join("null.jsonl")), "the link to /dev/null too");
    assert_eq!(job.read("real/out.jsonl").lines().count(), 50);
    assert_eq!(
        std::fs::read_link(d.join("null.jsonl")).expect("link"),
        Path::new("/dev/null")
    );
}

#[cfg(unix)]
#[test]
fn a_sink_at_a_named_pipe_writes_into_it() {
    let job = Job::new();
    let d = job.path();
    let fifo = d.join("out.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&fifo)
                .expect("open the pipe")
                .read_to_string(&mut text)
                .expect("read the pipe");
            text
        })
    };
    job_with_sinks(&job, "[[sinks]]\ninput = \"udf\"\npath = \"out.jsonl\"\n");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reader.join().expect("reader").lines().count(), 50);
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
    assert!(kind.is_fifo(), "the pipe is still a pipe");
}

#[test]
fn sinks_in_one_directory_keep_their_own_files() {
    let job = Job::new();
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"x.jsonl\"\n\n[[sinks]]\ninput = \"udf\"\npath = \"x.csv\"\ninterval = true\n",
    );
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (job.read("x.jsonl"), job.read("x.csv"));
    assert_eq!((a.lines().count(), b.lines().count()), (50, 50));
    assert!(
        !a.contains("_start") && b.contains("_start"),
        "each its own rows"
    );
    let leftovers: Vec<_> = std::fs::read_dir(job.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same file twice is refused before anything runs.
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"x.jsonl\"\n\n[[sinks]]\ninput = \"udf\"\npath = \"./x.jsonl\"\n",
    );
    let e = stderr(&job.run(&[]));
    assert!(e.contains("sinks[1]: sinks[0] writes"), "{e}");
}

#[test]
fn a_discard_sink_counts_rows_and_writes_nothing() {
    let job = Job::new();
    job_with_sinks(&job, "[[sinks]]\ninput = \"udf\"\ndiscard = true\n");
    let out = super::weir(&["run", "job.toml"], job.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("discard") && text.contains("50"), "{text}");
    let files: Vec<_> = std::fs::read_dir(job.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.starts_with("out")), "{files:?}");
}

#[test]
fn a_sink_writes_the_columns_it_names_offline_and_on_a_node() {
    let job = Job::new();
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"out.jsonl\"\ncolumns = [\"doubled\", \"id\"]\ninterval = true\n",
    );
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let offline = job.read("out.jsonl");
    assert!(
        offline.starts_with("{\"_start\":1000,\"_end\":1001,\"doubled\":0,\"id\":0}\n"),
        "{offline}"
    );
    assert_eq!(offline.lines().count(), 50);

    // The same bytes from a node.
    let dir = super::node::cluster();
    let d = dir.path();
    for file in ["job.toml", "items.jsonl"] {
        std::fs::copy(job.path().join(file), d.join(file)).expect("copy");
    }
    let node = super::node::Node::start(d, "data").expect("node starts");
    super::node::ok(&node.weir(d, &["job", "submit", "job.toml"]));
    super::jobs::wait_finished(&node, d, "job");
    let online = std::fs::read_to_string(d.join("out.jsonl")).expect("output");
    assert_eq!(online, offline);

    // A column the input does not have, or none at all, is refused.
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"out.jsonl\"\ncolumns = [\"id\", \"price\"]\n",
    );
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("sinks[0]: column `price` is not in its input, which has: id, doubled"),
        "{e}"
    );
    job_with_sinks(
        &job,
        "[[sinks]]\ninput = \"udf\"\npath = \"out.jsonl\"\ncolumns = []\n",
    );
    let e = stderr(&job.run(&[]));
    assert!(e.contains("`columns` names no column"), "{e}");
}
