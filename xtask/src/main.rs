//! `cargo xtask …`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `deps`      installs everything missing (Debian packages, the Python
//!   checkers in `target/xtask-venv`, Garage); the other commands install
//!   only what they need themselves.
//! - `ci`        runs every check CI runs: deps, fmt, clippy, tests, manifests.
//! - `manifests` checks deploy/ and the Dockerfiles offline.
//! - `demo`      shows backup and restore against throwaway servers.
//! - `bench`     compares the agent with mydumper / mariadb-dump on the same data.

mod bench;
mod ci;
mod demo;
mod deps;
mod manifests;
#[cfg(test)]
mod readme;
mod sh;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "MySQL Keeper project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install every missing tool: mariadb-server, mariadb-client, mydumper, sysbench, pigz, time (apt), the manifest checkers (target/xtask-venv) and Garage (cargo install).
    Deps,
    /// Run every check: deps, cargo fmt --check, clippy -D warnings, all tests.
    Ci,
    /// Offline checks of deploy/ and the Dockerfiles (kustomize, schemas, hadolint, checkov, release build).
    Manifests,
    /// Start MariaDB and Garage, load the sample database, back it up, restore it, compare.
    Demo,
    /// Benchmark against mydumper, myloader and mariadb-dump on the same data.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Deps => deps::install(deps::Purpose::All),
        Command::Ci => ci::run(),
        Command::Manifests => {
            deps::install(deps::Purpose::Manifests)?;
            manifests::check()
        }
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(args),
    }
}
