//! What a UDF author's own crate sees of the SDK.

use weir::testkit::{repo_root, udf_cargo};

use super::stderr;

#[test]
fn a_udf_crate_runs_no_doctest_of_the_sdk() {
    // `bot_filter` exports a processor with `export_filter!`: the bindings
    // that expands to carry doc examples of their own, which must not become
    // doctests of the author's crate.
    let out = udf_cargo(&repo_root().join("udfs"))
        .args(["test", "--doc", "-p", "bot_filter", "--", "--list"])
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("0 tests") && !listed.contains("__export"),
        "{listed}"
    );
}

#[test]
fn a_second_udf_crate_builds_without_building_the_sdk_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for name in ["first_udf", "second_udf"] {
        let out = super::weir(&["udf", "new", name], d);
        assert!(out.status.success(), "{}", stderr(&out));
        let config = std::fs::read_to_string(d.join(name).join(".cargo/config.toml"))
            .expect("the crate's cargo config");
        assert!(config.contains("udf-target"), "{config}");
        let out = super::weir(&["udf", "build", name], d);
        assert!(out.status.success(), "{}", stderr(&out));
        let log = stderr(&out);
        if name == "second_udf" {
            assert!(
                log.contains("Compiling second_udf") && !log.contains("Compiling weir-sdk"),
                "the second crate reuses the first one's build of the SDK:\n{log}"
            );
        }
        // The crate's own job file finds the component where it always did.
        let out = super::weir(&["run", "job.toml", "--quiet"], &d.join(name));
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// `weir udf test` over `udfs/user_stats`' sample: the component fires its
/// timers at the sample's CTI and at end of input, its output matches the
/// expected file, and a file that differs fails showing the line.
#[test]
fn udf_test_runs_the_component_over_a_sample_and_compares() {
    let crate_dir = repo_root().join("udfs/user_stats");
    let component = super::udf_component("user_stats").display().to_string();
    let args = |expect: &str| {
        vec![
            "udf".to_string(),
            "test".into(),
            "--component".into(),
            component.clone(),
            "--input".into(),
            "sample.jsonl".into(),
            "--key".into(),
            "user".into(),
            "--param".into(),
            "window_us=10".into(),
            "--param".into(),
            "max_clicks=2".into(),
            "--expect".into(),
            expect.into(),
        ]
    };
    let run = |args: Vec<String>, dir: &std::path::Path| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        super::weir(&refs, dir)
    };
    let out = run(args("sample.expected.jsonl"), &crate_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().count(),
        2,
        "one window closed by the CTI, one by end of input: {printed}"
    );
    assert!(
        printed.starts_with(r#"{"_start":10,"_end":11,"user":"ann","window_start":0"#),
        "{printed}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let expected = std::fs::read_to_string(crate_dir.join("sample.expected.jsonl")).expect("read");
    let wrong = dir.path().join("wrong.jsonl");
    std::fs::write(
        &wrong,
        expected.replace("\"clicks_in_window\":3", "\"clicks_in_window\":4"),
    )
    .expect("write");
    let out = run(args(&wrong.display().to_string()), &crate_dir);
    let err = stderr(&out);
    assert!(!out.status.success(), "a different output fails");
    assert!(
        err.contains("line 1: - {") && err.contains("line 1: + {") && err.contains("differs from"),
        "{err}"
    );

    // Bad input names file and line; a reducer without its key is refused.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"_cti\": 5}\n{\"_start\": 2, \"user\": \"a\", \"ad\": \"x\"}\n",
    )
    .expect("write");
    let mut bad_args = args("sample.expected.jsonl");
    bad_args[5] = bad.display().to_string();
    let out = run(bad_args, &crate_dir);
    assert!(
        !out.status.success()
            && stderr(&out).contains("bad.jsonl:2: the row starts at 2, before CTI 5"),
        "{}",
        stderr(&out)
    );
    let out = super::weir(
        &[
            "udf",
            "test",
            "--component",
            &component,
            "--input",
            "sample.jsonl",
        ],
        &crate_dir,
    );
    assert!(
        !out.status.success() && stderr(&out).contains("name its key column with --key"),
        "{}",
        stderr(&out)
    );
}
