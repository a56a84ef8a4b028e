//! End-to-end tests: the real `weir` binary, real job files, real components
//! built from `udfs/`. Each test asserts what a user would see.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir::testkit::{repo_root, udf_component};

mod cluster;
mod cluster_drain;
mod cluster_ingest;
mod cluster_jobs;
mod cluster_loss;
mod cluster_patch;
mod cluster_replicate;
mod cluster_stall;
mod filters;
mod input;
mod jobs;
mod logs;
mod nexmark;
mod nexmark_node;
mod nexmark_queries;
mod node;
mod offline;
mod parallel;
mod patch;
mod queries;
mod replay;
mod scripts;
mod sdk;
mod security;
mod sinks;

fn weir(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .env(
            "WEIR_CACHE_DIR",
            repo_root().join("target").join("weir-test-cache"),
        )
        .output()
        .expect("run weir")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir with `items.jsonl` holding ids 0..n and a job around one stage.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Self {
        Job {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
    fn items(&self, n: i64) {
        let text: String = (0..n)
            .map(|i| format!("{{\"ts\": {}, \"id\": {i}}}\n", 1000 + i))
            .collect();
        self.write("items.jsonl", &text);
    }
    /// A job: items (`ts`, `id`) -> one processor stage -> out.jsonl.
    fn one_stage(&self, component: &Path, params: &str, on_trap: &str) {
        self.one_stage_over(r#"ts = "int64", id = "int64""#, component, params, on_trap);
    }
    /// A job: items of `schema` -> one processor stage -> out.jsonl.
    fn one_stage_over(&self, schema: &str, component: &Path, params: &str, on_trap: &str) {
        self.write(
            "job.toml",
            &format!(
                r#"
[[sources]]
name = "items"
path = "items.jsonl"
event_time = "ts"
schema = {{ {schema} }}

[[stages]]
name = "udf"
input = "items"
kind = "processor"
component = "{}"
params = {{ {params} }}
on_trap = "{on_trap}"

[[sinks]]
input = "udf"
path = "out.jsonl"
"#,
                component.display()
            ),
        );
    }
    /// Adds `line` (such as `on_error = "dead-letter"`) to the job's source.
    fn source_line(&self, line: &str) {
        let text = self
            .read("job.toml")
            .replace("schema = {", &format!("{line}\nschema = {{"));
        self.write("job.toml", &text);
    }
    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "job.toml", "--quiet"];
        args.extend_from_slice(extra);
        weir(&args, self.path())
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }
}

fn click_fraud_job(dir: &Path, out: &str) {
    let example = repo_root().join("examples").join("click-fraud");
    let text = std::fs::read_to_string(example.join("job.toml")).expect("example job");
    let text = text
        .replace(
            "data/clicks.jsonl",
            &example.join("data/clicks.jsonl").display().to_string(),
        )
        .replace(
            "../../udfs/target/wasm32-wasip2/release/bot_filter.wasm",
            &udf_component("bot_filter").display().to_string(),
        )
        .replace(
            "../../udfs/target/wasm32-wasip2/release/user_stats.wasm",
            &udf_component("user_stats").display().to_string(),
        )
        .replace("out/flagged-users.jsonl", out)
        .replace("[[sinks]]\ninput = \"flags\"\nstdout = true\n", "");
    std::fs::write(dir.join("job.toml"), text).expect("write job");
}

#[test]
fn click_fraud_output_is_identical_across_batch_sizes_and_threads() {
    let job = Job::new();
    click_fraud_job(job.path(), "flags.jsonl");
    let mut outputs = Vec::new();
    for (batch, threads) in [("1024", "2"), ("1", "1"), ("7", "2"), ("4096", "1")] {
        let out = job.run(&["--batch-size", batch, "--threads", threads]);
        assert!(out.status.success(), "batch {batch}: {}", stderr(&out));
        outputs.push(job.read("flags.jsonl"));
    }
    assert!(
        outputs[0].lines().count() > 10,
        "the demo flags users: {}",
        outputs[0]
    );
    assert!(
        outputs[0].contains("\"user\":\"u042\""),
        "a known fraudster is flagged"
    );
    for o in &outputs[1..] {
        assert_eq!(o, &outputs[0]);
    }
}

#[test]
fn summary_reports_rows_per_stage() {
    let job = Job::new();
    click_fraud_job(job.path(), "flags.jsonl");
    let out = weir(&["run", "job.toml"], job.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("source  clicks") && text.contains("5000"),
        "{text}"
    );
    assert!(
        text.contains("stage   humans") && text.contains("4397"),
        "{text}"
    );
    assert!(text.contains("finished in"), "{text}");
}

#[test]
fn malformed_jsonl_line_fails_naming_file_line_and_column() {
    let job = Job::new();
    job.write(
        "items.jsonl",
        "{\"ts\": 1, \"id\": 1}\n{\"ts\": 2, \"id\": \"two\"}\n{\"ts\": 3, \"id\": 3}\n",
    );
    job.one_stage(&udf_component("panic_on_row"), "", "fail");
    let out = job.run(&[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("items.jsonl:2: column `id`: expected int64, found a string \"two\""),
        "{e}"
    );
    assert!(
        !job.path().join("out.jsonl").exists(),
        "no output that looks complete"
    );
}

#[test]
fn broken_json_goes_to_dead_letter_under_that_policy() {
    let job = Job::new();
    job.write(
        "items.jsonl",
        "{\"ts\": 1, \"id\": 1}\n{\"ts\": 2, \"id\": \n{\"ts\": 3, \"id\": 3}\n",
    );
    job.one_stage(&udf_component("panic_on_row"), "", "fail");
    job.source_line("on_error = \"dead-letter\"");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        job.read("out.jsonl"),
        "{\"id\":1,\"doubled\":2}\n{\"id\":3,\"doubled\":6}\n"
    );
    let dead = job.read("job.dead-letter.jsonl");
    assert!(
        dead.contains("\"line\":2") && dead.contains("invalid JSON"),
        "{dead}"
    );
}

#[test]
fn csv_row_with_bad_number_fails_naming_line_and_column() {
    let job = Job::new();
    job.write("items.csv", "ts,id\n1,1\n2,x2\n");
    job.one_stage(&udf_component("panic_on_row"), "", "fail");
    let text = job.read("job.toml").replace("items.jsonl", "items.csv");
    job.write("job.toml", &text);
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("items.csv:3: column `id`: expected int64, found `x2`"),
        "{e}"
    );
}

/// A job over `items.csv` (`ts`, `id`, `name`) with the `on_error` policy.
fn csv_job(text: &str, on_error: &str) -> Job {
    let job = Job::new();
    job.write("items.csv", text);
    job.one_stage_over(
        r#"ts = "int64", id = "int64", name = "utf8""#,
        &udf_component("panic_on_row"),
        "",
        "fail",
    );
    let toml = job
        .read("job.toml")
        .replace("items.jsonl", "items.csv")
        .replace(
            "schema = {",
            &format!("on_error = \"{on_error}\"\nschema = {{"),
        );
    job.write("job.toml", &toml);
    job
}

#[test]
fn csv_rows_with_the_wrong_field_count_are_errors_not_truncated() {
    // An unquoted comma splits a name in two: the row has a field too many.
    let text = "ts,id,name\n1,1,Ann\n2,2,Smith, John\n3,3\n4,4,Bo\n";
    let e = stderr(&csv_job(text, "fail").run(&[]));
    assert!(
        e.contains("items.csv:3: the row has 4 fields but the header has 3"),
        "{e}"
    );
    let job = csv_job(text, "dead-letter");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        job.read("out.jsonl")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].clone())
            .collect::<Vec<_>>(),
        [1, 4]
    );
    let dead: Vec<serde_json::Value> = job
        .read("job.dead-letter.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["line"], 3);
    assert_eq!(dead[0]["raw"], "2,2,Smith, John");
    assert_eq!(dead[1]["line"], 4);
    assert_eq!(dead[1]["raw"], "3,3");
}

#[test]
fn an_unterminated_csv_quote_is_an_error_not_swallowed_rows() {
    let text = "ts,id,name\n1,1,\"Ann\"\n2,2,\"Bo\n3,3,Cy\n4,4,Di\n";
    let e = stderr(&csv_job(text, "fail").run(&[]));
    assert!(
        e.contains("items.csv:3: a quoted field is never closed"),
        "{e}"
    );
    // A quoted field over several lines, with a doubled quote, is fine.
    let job = csv_job("ts,id,name\n1,1,\"Ann \"\"A\"\"\nSmith\"\n2,2,Bo\n", "fail");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(job.read("out.jsonl").lines().count(), 2);
}

#[test]
fn invalid_utf8_names_its_line_and_is_dead_lettered_under_that_policy() {
    let job = Job::new();
    let mut bytes = b"{\"ts\": 1, \"id\": 1}\n{\"ts\": 2, \"id\": 2, \"x\": \"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"}\n{\"ts\": 3, \"id\": 3}\n");
    std::fs::write(job.path().join("items.jsonl"), &bytes).expect("write");
    job.one_stage(&udf_component("panic_on_row"), "", "fail");
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("items.jsonl:2: invalid UTF-8 at byte 26 of the line"),
        "{e}"
    );
    job.source_line("on_error = \"dead-letter\"");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(job.read("out.jsonl").lines().count(), 2);
    let dead = job.read("job.dead-letter.jsonl");
    assert!(
        dead.contains("\"line\":2") && dead.contains("invalid UTF-8"),
        "{dead}"
    );
}

#[test]
fn a_row_whose_end_is_not_after_its_start_keeps_its_raw_text() {
    let job = Job::new();
    job.write(
        "items.jsonl",
        "{\"ts\": 5, \"te\": 9, \"id\": 1}\n{\"ts\": 7, \"te\": 7, \"id\": 2}\n",
    );
    job.one_stage_over(
        r#"ts = "int64", te = "int64", id = "int64""#,
        &udf_component("panic_on_row"),
        "",
        "fail",
    );
    job.source_line("end_time = \"te\"\non_error = \"dead-letter\"");
    let out = job.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dead: serde_json::Value =
        serde_json::from_str(job.read("job.dead-letter.jsonl").trim()).expect("one dead letter");
    assert_eq!(dead["raw"], "{\"ts\": 7, \"te\": 7, \"id\": 2}");
    assert!(
        dead.to_string().contains("is not after its start"),
        "{dead}"
    );
}

#[test]
fn a_trap_on_a_huge_row_names_the_row_without_printing_all_of_it() {
    let job = Job::new();
    let big = "x".repeat(4 << 20);
    job.write(
        "items.jsonl",
        &format!("{{\"ts\": 1, \"id\": 13, \"name\": \"{big}\"}}\n"),
    );
    job.one_stage_over(
        r#"ts = "int64", id = "int64", name = "utf8""#,
        &udf_component("panic_on_row"),
        "",
        "fail",
    );
    let out = job.run(&[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("input position 0") && e.contains("poison row id 13"),
        "{}",
        &e[..e.len().min(2000)]
    );
    assert!(e.contains("more bytes)"), "the row is cut, and says so");
    assert!(e.len() < 8 << 10, "{} bytes of error", e.len());
}

#[test]
fn schema_mismatch_between_udf_and_stream_is_refused() {
    let job = Job::new();
    job.write("items.jsonl", "{\"ts\": 1, \"name\": \"a\"}\n");
    job.one_stage(&udf_component("panic_on_row"), "", "fail");
    let text = job
        .read("job.toml")
        .replace("id = \"int64\"", "name = \"utf8\"");
    job.write("job.toml", &text);
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("stage `udf`")
            && e.contains("reads column `id` (int64) but its input has no such column"),
        "{e}"
    );
}

#[test]
fn trap_under_fail_names_stage_position_module_and_panic() {
    let job = Job::new();
    job.items(40);
    let component = udf_component("panic_on_row");
    job.one_stage(&component, "poison = 13", "fail");
    let version = weir::wasm::ModuleVersion::of(&std::fs::read(&component).expect("read"));
    let e = stderr(&job.run(&[]));
    assert!(e.contains("stage `udf`"), "{e}");
    assert!(e.contains(&format!("module {}", version.short())), "{e}");
    assert!(
        e.contains("trapped") && e.contains("at input position 13"),
        "{e}"
    );
    assert!(
        e.contains("poison row id 13"),
        "the UDF's panic message is shown: {e}"
    );
}

#[test]
fn trap_under_dead_letter_keeps_other_rows_whatever_the_batch_size() {
    let job = Job::new();
    job.items(40);
    job.one_stage(&udf_component("panic_on_row"), "poison = 13", "dead-letter");
    let mut outs = Vec::new();
    for batch in ["1", "8", "1024"] {
        let out = job.run(&["--batch-size", batch]);
        assert!(out.status.success(), "{}", stderr(&out));
        outs.push(job.read("out.jsonl"));
    }
    assert_eq!(outs[0].lines().count(), 39);
    assert!(!outs[0].contains("\"id\":13,"));
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
    let dead = job.read("job.dead-letter.jsonl");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains("input position 13") && dead.contains("poison row id 13"),
        "{dead}"
    );
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    let job = Job::new();
    job.items(10);
    job.one_stage(&udf_component("infinite_loop"), "trigger = 7", "fail");
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("exceeded its fuel budget") && e.contains("at input position 7"),
        "{e}"
    );
}

#[test]
fn memory_bomb_is_stopped_by_the_limit() {
    let job = Job::new();
    job.items(10);
    job.one_stage(&udf_component("memory_bomb"), "trigger = 5", "fail");
    let text = job
        .read("job.toml")
        .replace("on_trap = \"fail\"", "on_trap = \"fail\"\nmemory_mib = 32");
    job.write("job.toml", &text);
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("exceeded its memory limit") && e.contains("32 MiB"),
        "{e}"
    );
    assert!(e.contains("at input position 5"), "{e}");
}

#[test]
fn forbidden_import_is_refused_at_load_naming_it() {
    let job = Job::new();
    job.items(3);
    job.one_stage(&udf_component("forbidden_import"), "", "fail");
    let e = stderr(&job.run(&[]));
    assert!(e.contains("imports `wasi:filesystem/"), "{e}");
    assert!(e.contains("the host filesystem"), "{e}");
}

#[test]
fn files_that_are_not_components_are_refused() {
    let job = Job::new();
    job.items(3);
    let text = job.write("notes.wasm", "hello");
    job.one_stage(&text, "", "fail");
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("is not a WebAssembly component") && e.contains("magic bytes"),
        "{e}"
    );
    // A core module (what wasm32-unknown-unknown produces) is refused too.
    let core = job.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    job.one_stage(&core, "", "fail");
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("core WebAssembly module, not a component"),
        "{e}"
    );
}

#[test]
fn failing_init_refuses_the_stage_with_the_udfs_reason() {
    let job = Job::new();
    job.write(
        "c.jsonl",
        "{\"ts\": 1, \"agent\": \"x\", \"ip\": \"1.2.3.4\"}\n",
    );
    job.one_stage(
        &udf_component("bot_filter"),
        "blocked_prefix = \"*\"",
        "fail",
    );
    let text = job
        .read("job.toml")
        .replace("items.jsonl", "c.jsonl")
        .replace("id = \"int64\"", "agent = \"utf8\", ip = \"utf8\"");
    job.write("job.toml", &text);
    let e = stderr(&job.run(&[]));
    assert!(
        e.contains("refused its parameters in init: blocked_prefix `*` would drop every click"),
        "{e}"
    );
}

#[test]
fn clocks_and_random_are_deterministic() {
    let job = Job::new();
    job.items(50);
    job.one_stage(&udf_component("clock_random"), "", "fail");
    let first = job.run(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let a = job.read("out.jsonl");
    let b = {
        job.run(&[]);
        job.read("out.jsonl")
    };
    assert_eq!(a, b, "two runs give identical clock and random values");
    // Clocks read event time, not the host's clock: the first batch starts at ts 1000.
    assert!(a.starts_with("{\"id\":0,\"now_us\":1000,"), "{a}");
}

#[test]
fn what_a_udf_sees_does_not_depend_on_the_batch_size() {
    // 3,000 rows: three segments of the stage's input, cut differently into
    // batches each run.
    let job = Job::new();
    job.items(3000);
    job.one_stage(&udf_component("clock_random"), "", "fail");
    let mut outputs = Vec::new();
    for (batch_size, threads) in [("1000", "2"), ("7", "1"), ("4096", "2"), ("1024", "1")] {
        let out = job.run(&["--batch-size", batch_size, "--threads", threads]);
        assert!(out.status.success(), "{}", stderr(&out));
        outputs.push((batch_size, job.read("out.jsonl")));
    }
    let (_, first) = &outputs[0];
    assert_eq!(first.lines().count(), 3000);
    for (batch_size, text) in &outputs[1..] {
        let differ = first.lines().zip(text.lines()).position(|(a, b)| a != b);
        assert_eq!(differ, None, "batch size {batch_size}: first differing row");
    }
    // Clocks read the start of the segment's first event: rows 0..1024 see
    // ts 1000, rows from 1024 on see ts 2024.
    let rows: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows[1023]["now_us"], 1000);
    assert_eq!(rows[1024]["now_us"], 2024);
}

#[test]
fn nulls_booleans_floats_and_strings_cross_the_boundary_intact() {
    // 29 rows with nulls in every nullable column at different strides, run
    // in batches of several sizes so that batches start at offsets that are
    // not multiples of 8 (validity bitmaps are realigned when lowered).
    let job = Job::new();
    let texts = ["", "a", "héllo", "ünïcödé text"];
    let mut input = String::new();
    let mut expected = Vec::new();
    let json = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    for i in 0..29i64 {
        let n = (i % 3 != 0).then_some(i - 10);
        let x = (i % 4 != 1).then_some(i as f64 * 0.25);
        let ok = (i % 5 != 2).then_some(i % 2 == 0);
        let s = (i % 7 != 3).then_some(texts[i as usize % 4]);
        let flag = i % 3 == 1;
        input.push_str(&format!(
            "{{\"ts\": {}, \"n\": {}, \"x\": {}, \"ok\": {}, \"s\": {}, \"flag\": {flag}}}\n",
            1000 + i,
            json(n.map(|v| v.to_string())),
            json(x.map(|v| format!("{v:?}"))),
            json(ok.map(|v| v.to_string())),
            json(s.map(|v| format!("{v:?}"))),
        ));
        expected.push((
            n.map(|v| v * 2),
            x.map(|v| v + 0.5),
            ok.map(|b| !b),
            s.map(|v| v.chars().count() as i64),
            !flag,
        ));
    }
    job.write("items.jsonl", &input);
    job.one_stage_over(
        r#"ts = "int64", n = "int64?", x = "float64?", ok = "boolean?", s = "utf8?", flag = "boolean""#,
        &udf_component("nullable_echo"),
        "",
        "fail",
    );
    let mut outputs = Vec::new();
    for size in ["3", "7", "8", "29"] {
        let out = job.run(&["--batch-size", size]);
        assert!(out.status.success(), "batch size {size}: {}", stderr(&out));
        outputs.push(job.read("out.jsonl"));
    }
    assert!(
        outputs.iter().all(|o| *o == outputs[0]),
        "independent of batch size"
    );
    let rows: Vec<serde_json::Value> = outputs[0]
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), expected.len());
    for (i, (row, (n2, x2, not_ok, chars, not_flag))) in rows.iter().zip(&expected).enumerate() {
        assert_eq!(row["n2"].as_i64(), *n2, "row {i}: {row}");
        assert_eq!(row["x2"].as_f64(), *x2, "row {i}: {row}");
        assert_eq!(row["not_ok"].as_bool(), *not_ok, "row {i}: {row}");
        assert_eq!(row["chars"].as_i64(), *chars, "row {i}: {row}");
        assert_eq!(row["not_flag"].as_bool(), Some(*not_flag), "row {i}: {row}");
    }
}

#[test]
fn what_a_udf_prints_goes_to_the_log_however_much() {
    // 3,000 rows of 2 KB each: 6 MB of stdout over the job, more than one
    // call keeps (4 MiB), so first in calls of 100 rows; then rows of 5 KB
    // in calls of a whole segment (1,024 rows, 5 MB each).
    let job = Job::new();
    job.items(3000);
    job.one_stage(&udf_component("chatty"), "width = 2000", "fail");
    let out = job.run(&["--batch-size", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(job.read("out.jsonl").lines().count(), 3000);
    let log = stderr(&out);
    let printed = log.lines().filter(|l| l.contains("[stdout] row ")).count();
    assert_eq!(printed, 3000, "every line printed is logged");
    assert!(log.contains("[stdout] row 2999 xxxx"), "the last line too");
    assert!(log.contains("[stderr] at row 2900"), "stderr as well");
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log that is not a terminal"
    );
    assert!(
        !log.contains("dropped"),
        "nothing dropped in calls of 100 rows"
    );

    job.one_stage(&udf_component("chatty"), "width = 5000", "fail");
    let out = job.run(&["--batch-size", "4096"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(job.read("out.jsonl").lines().count(), 3000);
    let log = stderr(&out);
    let printed = log.lines().filter(|l| l.contains("[stdout] row ")).count();
    assert!(
        (2000..3000).contains(&printed),
        "4 MiB of lines per call: {printed}"
    );
    assert!(
        log.contains("more bytes dropped: a call keeps 4 MiB)"),
        "the overflow is said, not silent"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `weir udf inspect X | head -0`: the reader is gone before weir prints.
    let component = udf_component("user_stats");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["udf", "inspect", &component.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn weir");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "nothing said on stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "no panic exit");
}

#[test]
fn udf_inspect_shows_world_version_and_imports() {
    let component = udf_component("user_stats");
    let out = weir(
        &["udf", "inspect", &component.display().to_string()],
        &repo_root(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let version = weir::wasm::ModuleVersion::of(&std::fs::read(&component).expect("read"));
    assert!(text.contains("world:    weir:udf/timed-reducer"), "{text}");
    assert!(text.contains("wit:      weir:udf@0.2.0"), "{text}");
    assert!(text.contains("weir:udf/timers@0.2.0"), "{text}");
    assert!(
        text.contains(&format!("module:   {}", version.hex())),
        "{text}"
    );
    assert!(text.contains("weir:udf/state@0.2.0"), "{text}");
}

/// The timed-reducer template builds, passes its own test, and its job
/// emits each window once it has closed.
#[test]
fn udf_new_timed_reducer_template_emits_windows_as_they_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weir(
        &["udf", "new", "win", "--kind", "timed-reducer"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let crate_dir = dir.path().join("win");
    let out = weir(&["udf", "build", "win"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let test = weir::testkit::udf_cargo(&crate_dir)
        .args(["test", "--quiet"])
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/weir-test-cache/udf-target"),
        )
        .output()
        .expect("cargo test");
    assert!(test.status.success(), "{}", stderr(&test));
    let out = weir(&["run", "job.toml", "--quiet"], &crate_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"user\":\"ada\",\"window_start\":0,\"count\":1,\"sum\":12.5}\n{\"user\":\"ada\",\"window_start\":2000,\"count\":1,\"sum\":3.25}\n{\"user\":\"bob\",\"window_start\":2000,\"count\":1,\"sum\":0.5}\n"
    );
}

#[test]
fn udf_new_build_and_run_from_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weir(&["udf", "new", "my_udf", "--kind", "reducer"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let crate_dir = dir.path().join("my_udf");
    let out = weir(&["udf", "build", "my_udf"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("my_udf.wasm  module "));
    let out = weir(&["run", "job.toml", "--quiet"], &crate_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"user\":\"ada\",\"count\":1,\"sum\":12.5}\n{\"user\":\"bob\",\"count\":1,\"sum\":0.5}\n{\"user\":\"ada\",\"count\":2,\"sum\":15.75}\n"
    );
}
