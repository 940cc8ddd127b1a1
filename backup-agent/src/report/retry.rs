//! Retrying API calls: a restarting API server or a flaky network must not
//! lose a backup's status, but a `Forbidden` or `NotFound` will not go away by
//! asking again.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently a report is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts over about 3.5 s: long enough to ride out an API server
    /// rollout's blip, short enough not to hold a finished Job for long.
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no waiting: for reports that will be repeated soon anyway
    /// (restore progress), where waiting would stall the data path.
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        initial_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// Whether asking again may succeed: server errors, throttling and
/// connection failures. Client errors (403, 404, 409, 422) are final.
pub(crate) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails with a non-transient error, or the
/// attempts are used up; each failure is logged with `what`.
pub(crate) async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    mut call: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < attempts && is_transient(&e) => {
                let delay = policy.delay(attempt);
                tracing::warn!(
                    attempt,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    "{what}: {}",
                    super::describe(&e)
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("boom", "InternalError").with_code(code),
        ))
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_millis(500));
        assert_eq!(p.delay(2), Duration::from_millis(1000));
        assert_eq!(p.delay(3), Duration::from_millis(2000));
        assert_eq!(p.delay(10), Duration::from_secs(5));
    }

    #[test]
    fn transient_errors() {
        assert!(is_transient(&api_error(500)));
        assert!(is_transient(&api_error(503)));
        assert!(is_transient(&api_error(429)));
        assert!(!is_transient(&api_error(403)));
        assert!(!is_transient(&api_error(404)));
        assert!(!is_transient(&api_error(409)));
    }

    #[tokio::test]
    async fn retries_transient_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result = retry(fast(4), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(api_error(503))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_on_final_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(fast(3), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_error(500))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(fast(3), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_error(403))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
