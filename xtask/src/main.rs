//! `cargo xtask …`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `deps`  installs what is missing (Debian packages, Garage).
//! - `ci`    runs every check CI runs: deps, fmt, clippy, tests, manifests.
//! - `demo`  runs the main job locally against throwaway servers.
//! - `bench` compares the agent with mydumper / mariadb-dump on the same data.

mod bench;
mod ci;
mod demo;
mod deps;
mod manifests;
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
    /// Install missing tools: mariadb-server, mariadb-client, mydumper, sysbench, pigz (apt) and Garage (cargo install).
    Deps,
    /// Run every check: deps, cargo fmt --check, clippy -D warnings, all tests.
    Ci,
    /// Offline checks of deploy/ and the Dockerfiles (kustomize, schemas, hadolint, checkov, release build).
    Manifests,
    /// Start MariaDB and Garage, load the sakila sample, back it up, restore it, compare.
    Demo,
    /// Benchmark against mydumper, myloader and mariadb-dump on the same data.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Deps => deps::install(),
        Command::Ci => ci::run(),
        Command::Manifests => manifests::check(),
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(args),
    }
}
