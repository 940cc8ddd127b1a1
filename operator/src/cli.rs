//! The command line: `keeper-operator run` and `keeper-operator render`.
//! Every `run` flag can also come from the environment (for the Deployment).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use crate::context::OperatorConfig;
use crate::telemetry::LogFormat;

/// MySQL Keeper operator.
#[derive(Debug, Parser)]
#[command(name = "keeper-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster.
    Run(RunArgs),
    /// Print, as YAML, every object the operator would apply for the
    /// MySQLInstance objects in a file (no cluster needed).
    Render(RenderArgs),
}

/// Flags of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Namespaces to watch (repeat the flag or separate with commas); none
    /// means all namespaces.
    #[arg(long = "namespace", env = "KEEPER_NAMESPACES", value_delimiter = ',')]
    pub namespace: Vec<String>,

    /// Image of the backup agent for backup and restore Jobs.
    #[arg(long, env = "KEEPER_AGENT_IMAGE", default_value_t = OperatorConfig::default_agent_image())]
    pub agent_image: String,

    /// Log format.
    #[arg(long, env = "KEEPER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "KEEPER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "KEEPER_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,

    /// Elect a leader with a Lease, so that only one replica reconciles.
    #[arg(long, env = "KEEPER_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "KEEPER_LEASE_NAME",
        default_value = "keeper-operator-leader"
    )]
    pub lease_name: String,

    /// Namespace of the leader Lease: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "mysql-keeper-system")]
    pub lease_namespace: String,
}

impl RunArgs {
    /// The namespaces to watch, without blanks and duplicates; empty = all.
    pub fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .namespace
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }
}

/// Flags of `render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// YAML file with MySQLInstance objects (multi-document); `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_defaults_and_namespace_lists() {
        let cli = Cli::try_parse_from([
            "keeper-operator",
            "run",
            "--namespace",
            "a,b",
            "--namespace",
            "a",
            "--leader-election",
            "false",
        ])
        .expect("valid arguments");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.namespaces(), ["a", "b"]);
        assert!(!args.leader_election);
        assert_eq!(args.metrics_addr.port(), 8080);
        assert_eq!(args.health_addr.port(), 8081);
        assert!(args.agent_image.ends_with(env!("CARGO_PKG_VERSION")));
        assert_eq!(args.log_format, LogFormat::Text);
    }

    #[test]
    fn render_takes_a_file() {
        let cli = Cli::try_parse_from(["keeper-operator", "render", "-f", "x.yaml"])
            .expect("valid arguments");
        assert!(matches!(cli.command, Command::Render(a) if a.file.as_os_str() == "x.yaml"));
    }
}
