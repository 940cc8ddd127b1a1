//! The dump engine. Being built in issue 5.

use crate::AgentContext;
use crate::cli::BackupArgs;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup is not implemented yet")]
    NotImplemented,
}

pub async fn backup(_args: BackupArgs, _ctx: &AgentContext) -> Result<(), BackupError> {
    Err(BackupError::NotImplemented)
}
