//! Every check CI runs, in the order that fails fastest.

use crate::deps::{self, Purpose};
use crate::{manifests, sh};

pub fn run() -> anyhow::Result<()> {
    deps::install(Purpose::All)?;
    sh::run(sh::cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh::run(sh::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh::run(sh::cargo().args(["test", "--workspace", "--locked"]))?;
    manifests::check()?;
    // A tiny bench keeps `cargo xtask bench` working (issue 11). After the
    // manifest step, which already built the release agent, so this costs
    // only the servers, a 2,000-row sysbench table and the contenders
    // (well under a minute). Never a full-size run here: timings on a
    // shared CI machine mean nothing.
    crate::bench::run(crate::bench::BenchArgs {
        tables: 1,
        rows: 2_000,
        threads: 2,
        json: None,
        skip_restore: false,
        skip_s3: true,
    })?;
    eprintln!("ci: all checks passed");
    Ok(())
}
