//! The restore engine, verify and list. Being built in issue 5.

use crate::AgentContext;
use crate::cli::{ListArgs, RestoreArgs, VerifyArgs};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore is not implemented yet")]
    NotImplemented,
}

pub async fn restore(_args: RestoreArgs, _ctx: &AgentContext) -> Result<(), RestoreError> {
    Err(RestoreError::NotImplemented)
}

pub async fn verify(_args: VerifyArgs, _ctx: &AgentContext) -> Result<(), RestoreError> {
    Err(RestoreError::NotImplemented)
}

pub async fn list(_args: ListArgs, _ctx: &AgentContext) -> Result<(), RestoreError> {
    Err(RestoreError::NotImplemented)
}
