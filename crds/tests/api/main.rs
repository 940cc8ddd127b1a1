//! Tests of the API as a whole: the generated CRDs, the committed YAML, the
//! samples, defaults and the CEL rules.
//!
//! CEL approach: the rules are *evaluated*, not just read. `kube-cel` (a
//! dev-dependency only) compiles the `x-kubernetes-validations` of the
//! generated schema and runs them, with schema defaults applied first as the
//! API server does, on valid and invalid objects and on updates (`oldSelf`).
//! The rule texts are also asserted at their schema paths and snapshotted.
#![allow(clippy::unwrap_used)]

mod cel;
mod common;
mod crd;
mod defaults;
mod samples;
