//! Test harness: real, throwaway services for tests, the demo and the benchmarks.
//!
//! - [`MariaDb`] starts a MariaDB server (Debian `mariadb-server`) with a fresh
//!   datadir in a temporary directory, on a free port of 127.0.0.1, with a root
//!   password and the binary log on.
//! - [`Garage`] starts a single-node Garage S3 store with one bucket and one
//!   access key allowed on it.
//! - [`Proxy`] sits between a client and either server on loopback, to drop,
//!   refuse, slow down or (HTTP) fail connections and requests on demand.
//! - [`sample`] loads the project's sample database, and [`Inventory`] reads
//!   what a database holds so two servers can be compared.
//! - [`kube::FakeCluster`] is the in-memory Kubernetes API of the reconcile
//!   and report tests, behind a layer that checks every call against the
//!   shipped RBAC and every write the way a real API server would.
//!
//! The servers stop when dropped (also when a test panics, since the value is dropped
//! while unwinding), and several of each can run side by side. A service that
//! cannot start fails with a [`HarnessError`] that names the missing binary and
//! how to install it: tests never pass silently without their servers.

mod garage;
mod inventory;
pub mod kube;
mod mariadb;
mod process;
mod proxy;
pub mod sample;

pub use garage::{Garage, client_for as s3_client_for};
pub use inventory::{Inventory, Match, ObjectFacts, ObjectKind, TableFacts};
pub use mariadb::{MariaDb, MariaDbOptions};
pub use process::HarnessError;
pub use proxy::Proxy;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
