//! Every check CI runs, in the order that fails fastest.

use crate::{deps, manifests, sh};

pub fn run() -> anyhow::Result<()> {
    deps::install()?;
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
    eprintln!("ci: all checks passed");
    Ok(())
}
