//! What the agent was given besides its arguments: the environment and,
//! inside Kubernetes, a client. Every module reads the environment through
//! it (only `main` reads `std::env`), so tests run the agent in-process
//! with a Job's exact environment.

use std::collections::HashMap;

/// What the agent was given besides its arguments.
#[derive(Clone, Default)]
pub struct AgentContext {
    /// The process environment (or a test's stand-in for it).
    pub env: HashMap<String, String>,
    /// Set inside Kubernetes: the agent reports into `MySQLBackup` and
    /// `MySQLInstance` status. Outside, it only prints.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds secrets (MYSQL_PWD, AWS keys): never print it.
        f.debug_struct("AgentContext")
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .field("kube", &self.kube.is_some())
            .finish()
    }
}

impl AgentContext {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}
