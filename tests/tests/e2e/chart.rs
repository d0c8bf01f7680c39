//! The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk), for the
//! defaults and every example, with the schema rejecting bad values: tests/chart/test_chart.py.

use weir_e2e::{python, repo_root, run};

#[tokio::test]
async fn the_chart_renders_lints_and_rejects_bad_values() {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(repo_root().join("tests/chart/test_chart.py"))
        .arg("-v")
        .current_dir(repo_root());
    let out = run(cmd).await;
    assert_eq!(
        out.code, 0,
        "chart tests failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    // unittest reports on stderr; make sure the suite ran rather than finding nothing.
    assert!(out.stderr.contains("Ran 8 tests"), "{}", out.stderr);
    assert!(out.stderr.trim_end().ends_with("OK"), "{}", out.stderr);
}
