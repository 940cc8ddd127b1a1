//! Offline checks of what a cluster admin installs: kustomize overlays build,
//! every object validates against the Kubernetes schemas and our CRDs, the
//! Dockerfiles pass hadolint, a policy scanner finds nothing in `deploy/`, and
//! the release binaries the images contain build. The Python checkers run
//! from the project's venv (`crate::deps`), which `deps::install` fills.

use std::process::Command;

use anyhow::Context;

use crate::deps::venv_command;
use crate::sh::{self, workspace_root};

const OVERLAYS: &[&str] = &["crds", "rbac", "operator", "samples", "default"];
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
