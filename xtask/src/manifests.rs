//! Offline checks of what a cluster admin installs: kustomize overlays build,
//! every object validates against the Kubernetes schemas and our CRDs, the
//! alerts of `deploy/monitoring` pass `promtool check rules` and their unit
//! tests (`promtool test rules`), the Dockerfiles pass hadolint, a policy
//! scanner finds nothing in `deploy/`, and the release binaries the images
//! contain build. The Python checkers run from the project's venv
//! (`crate::deps`), which `deps::install` fills; promtool comes from
//! Debian's `prometheus` package.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::deps::venv_command;
use crate::sh::{self, workspace_root};

const OVERLAYS: &[&str] = &[
    "crds",
    "rbac",
    "operator",
    "samples",
    "default",
    "monitoring",
];
/// The oldest Kubernetes minor we support (k8s-openapi's `v1_32` feature).
const KUBERNETES_VERSION: &str = "1.32.0";

pub fn check() -> anyhow::Result<()> {
    let out = tempfile::Builder::new()
        .prefix("keeper-manifests-")
        .tempdir()?;
    for overlay in OVERLAYS {
        let built = out.path().join(format!("{overlay}.yaml"));
        let output = Command::new("kubectl")
            .current_dir(workspace_root())
            .args(["kustomize", &format!("deploy/{overlay}")])
            .output()
            .context("running kubectl kustomize (apt-get install kubectl)")?;
        anyhow::ensure!(
            output.status.success(),
            "kubectl kustomize deploy/{overlay} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        std::fs::write(&built, &output.stdout)?;
        eprintln!("manifests: deploy/{overlay} builds");
    }
    sh::run(
        venv_command("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
            .arg(out.path().join("default.yaml")),
    )
    .context("validating deploy/default against the Kubernetes schemas")?;
    sh::run(
        venv_command("python3")
            .arg(workspace_root().join("xtask/scripts/validate_custom_resources.py"))
            .arg(workspace_root().join("deploy/crds/mysql.keeper.dev_crds.yaml"))
            .arg(out.path().join("samples.yaml")),
    )
    .context("validating deploy/samples against the CRDs")?;
    check_alerts(out.path())?;
    sh::run(
        venv_command("hadolint")
            .current_dir(workspace_root())
            .args(["Dockerfile.operator", "Dockerfile.agent"]),
    )?;
    sh::run(venv_command("checkov").current_dir(workspace_root()).args([
        "--config-file",
        ".checkov.yaml",
        "-d",
        "deploy",
    ]))
    .context("checkov found failed checks in deploy/")?;
    sh::run(sh::cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "keeper-operator",
        "-p",
        "keeper-agent",
    ]))
    .context("building the release binaries the images contain")
}

/// The rule file inside `deploy/monitoring`'s PrometheusRule, checked and
/// unit-tested with promtool. The tests name the rule file
/// `keeper-alerts.rules.yaml` beside them, so both are written to `out`.
fn check_alerts(out: &Path) -> anyhow::Result<()> {
    let monitoring = workspace_root().join("deploy/monitoring");
    let dir = out.join("alerts");
    std::fs::create_dir_all(&dir)?;
    let rules = dir.join("keeper-alerts.rules.yaml");
    sh::run(
        venv_command("python3")
            .arg(workspace_root().join("xtask/scripts/prometheus_rules.py"))
            .arg(monitoring.join("prometheus_rule.yaml"))
            .arg(&rules),
    )
    .context("extracting the rules of deploy/monitoring/prometheus_rule.yaml")?;
    let tests = dir.join("keeper-alerts.test.yaml");
    std::fs::copy(monitoring.join("tests/keeper-alerts.test.yaml"), &tests)?;
    sh::run(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&rules),
    )
    .context("promtool check rules (apt-get install prometheus)")?;
    sh::run(Command::new("promtool").args(["test", "rules"]).arg(&tests)).context(
        "promtool test rules: an alert of deploy/monitoring does not behave as its test says",
    )?;
    eprintln!("manifests: deploy/monitoring alerts pass promtool check and test");
    Ok(())
}
