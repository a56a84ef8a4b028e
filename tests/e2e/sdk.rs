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
