//! The command line: `keeper-operator run` and `keeper-operator render`.
//! Every `run` flag can also come from the environment (for the Deployment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Run the operator against the cluster (boxed: far larger than the
    /// other variant).
    Run(Box<RunArgs>),
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

    /// Namespace of the leader Lease: the operator's own (from the downward
    /// API in the cluster; outside it, the namespace `deploy/` installs into,
    /// where the leader-election Role grants Leases).
    #[arg(long, env = "POD_NAMESPACE", default_value = "keeper-system")]
    pub lease_namespace: String,

    /// How long deleting an instance with `backupOnDelete` waits for its
    /// final backup before letting go without it: seconds, or a number with
    /// an `s`, `m` or `h` suffix (`90`, `45m`, `2h`).
    #[arg(
        long,
        env = "KEEPER_FINAL_BACKUP_TIMEOUT",
        default_value = "1h",
        value_parser = parse_duration
    )]
    pub final_backup_timeout: Duration,

    /// How long a MySQLBackup waits (phase Pending) for its MySQLInstance to
    /// exist and be ready before it fails; same format.
    #[arg(
        long,
        env = "KEEPER_INSTANCE_WAIT_TIMEOUT",
        default_value = "30m",
        value_parser = parse_duration
    )]
    pub instance_wait_timeout: Duration,

    /// How long a backup or restore Job's pod may take to start (scheduled,
    /// image pulled, container created) before the run fails with the reason
    /// and its Job is deleted; same format.
    #[arg(
        long,
        env = "KEEPER_AGENT_START_TIMEOUT",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub agent_start_timeout: Duration,

    /// The longest a backup run may take, set as its Job's
    /// `activeDeadlineSeconds`; unset: no bound (a large database may take
    /// hours). Restores are never bounded. Same format.
    #[arg(long, env = "KEEPER_BACKUP_RUN_TIMEOUT", value_parser = parse_duration)]
    pub backup_run_timeout: Option<Duration>,
}

/// A duration: whole seconds (`90`), or a whole number with the suffix `s`,
/// `m` or `h` (`90s`, `45m`, `2h`).
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.char_indices().last() {
        Some((at, 's')) => (&value[..at], 1),
        Some((at, 'm')) => (&value[..at], 60),
        Some((at, 'h')) => (&value[..at], 3600),
        _ => (value, 1),
    };
    let invalid = || {
        format!(
            "invalid duration {value:?}: expected seconds or a number with s, m or h (e.g. 90, 45m, 2h)"
        )
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number: u64 = number.parse().map_err(|_| invalid())?;
    if number == 0 {
        // A zero wait would fail every run at its first look (a start
        // deadline) or every Job at once (a run deadline): never what is meant.
        return Err(format!("invalid duration {value:?}: must be more than 0"));
    }
    number
        .checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
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

    /// Image of the backup agent in the backup CronJob, as `run` takes it.
    #[arg(long, env = "KEEPER_AGENT_IMAGE", default_value_t = OperatorConfig::default_agent_image())]
    pub agent_image: String,

    /// The backup run's bound, as `run` takes it (the CronJob's Jobs'
    /// `activeDeadlineSeconds`).
    #[arg(long, env = "KEEPER_BACKUP_RUN_TIMEOUT", value_parser = parse_duration)]
    pub backup_run_timeout: Option<Duration>,
}

impl RenderArgs {
    /// The settings the objects are rendered with: those `run` would have
    /// with the same flags.
    pub fn config(&self) -> OperatorConfig {
        OperatorConfig {
            agent_image: self.agent_image.clone(),
            backup_run_timeout: self.backup_run_timeout,
            ..OperatorConfig::default()
        }
    }
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
        assert_eq!(args.final_backup_timeout, Duration::from_secs(3600));
        assert_eq!(args.instance_wait_timeout, Duration::from_secs(1800));
        assert_eq!(args.agent_start_timeout, Duration::from_secs(600));
        assert_eq!(args.backup_run_timeout, None);
    }

    #[test]
    fn wait_start_and_run_timeout_flags() {
        let cli = Cli::try_parse_from([
            "keeper-operator",
            "run",
            "--instance-wait-timeout",
            "5m",
            "--agent-start-timeout",
            "90",
            "--backup-run-timeout",
            "6h",
        ])
        .expect("valid arguments");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.instance_wait_timeout, Duration::from_secs(300));
        assert_eq!(args.agent_start_timeout, Duration::from_secs(90));
        assert_eq!(args.backup_run_timeout, Some(Duration::from_secs(6 * 3600)));
        assert!(
            Cli::try_parse_from(["keeper-operator", "run", "--agent-start-timeout", "1d"]).is_err()
        );
    }

    #[test]
    fn default_lease_namespace_is_where_the_shipped_role_grants_leases() {
        use clap::CommandFactory;
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("run subcommand");
        let default = run
            .get_arguments()
            .find(|a| a.get_id() == "lease_namespace")
            .expect("--lease-namespace")
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        let role: serde_yaml::Value = serde_yaml::Deserializer::from_str(include_str!(
            "../../deploy/rbac/leader_election_role.yaml"
        ))
        .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML"))
        .find(|doc: &serde_yaml::Value| doc["kind"] == "Role")
        .expect("the leader-election Role");
        let namespace = role["metadata"]["namespace"].as_str().expect("namespace");
        assert_eq!(default, [namespace]);
    }

    #[test]
    fn final_backup_timeout_flag() {
        let parse = |value: &str| {
            let cli =
                Cli::try_parse_from(["keeper-operator", "run", "--final-backup-timeout", value])?;
            let Command::Run(args) = cli.command else {
                panic!("expected run");
            };
            Ok::<_, clap::Error>(args.final_backup_timeout)
        };
        assert_eq!(parse("90").expect("seconds"), Duration::from_secs(90));
        assert_eq!(parse("30s").expect("s"), Duration::from_secs(30));
        assert_eq!(parse("45m").expect("m"), Duration::from_secs(45 * 60));
        assert_eq!(parse("2h").expect("h"), Duration::from_secs(7200));
        for bad in [
            "",
            "h",
            "1d",
            "-5",
            "1.5h",
            "1 h",
            "99999999999999999999h",
            "0",
            "0m",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(
            parse_duration("18446744073709551615h").ok(),
            None,
            "overflow is an error"
        );
    }

    #[test]
    fn render_takes_a_file() {
        let cli = Cli::try_parse_from(["keeper-operator", "render", "-f", "x.yaml"])
            .expect("valid arguments");
        assert!(matches!(cli.command, Command::Render(a) if a.file.as_os_str() == "x.yaml"));
    }
}
