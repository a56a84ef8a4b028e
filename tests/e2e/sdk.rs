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
