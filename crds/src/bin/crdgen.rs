//! Prints both CustomResourceDefinitions as one multi-document YAML:
//! `cargo run -p keeper-crds --bin crdgen > deploy/crds/mysql.keeper.dev_crds.yaml`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match keeper_crds::crds_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::io::stdout().lock().write_all(yaml.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
