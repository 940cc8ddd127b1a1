//! Retention: delete expired backups. Being built in issue 6.

use crate::AgentContext;
use crate::cli::PruneArgs;

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("prune is not implemented yet")]
    NotImplemented,
}

pub async fn prune(_args: PruneArgs, _ctx: &AgentContext) -> Result<(), PruneError> {
    Err(PruneError::NotImplemented)
}
