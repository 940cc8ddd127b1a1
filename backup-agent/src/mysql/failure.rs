//! What a `mysql_async` error means for the agent, worked out in one place;
//! each engine turns a [`Failure`] into its own error, named for the step
//! that failed.

use crate::message::one_line;

/// The server's "access denied for user" on login.
const ACCESS_DENIED: u16 = 1045;

/// A driver error, sorted by what the user has to do about it. Engines keep
/// it as the typed reason of their own errors; it prints as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server refused the login: the user or the password is wrong.
    #[error("access denied")]
    AccessDenied,
    /// The server answered with an error.
    #[error("error {code} ({state}): {message}")]
    Server {
        /// The server's error number (`1146` for a missing table).
        code: u16,
        /// The SQLSTATE.
        state: String,
        /// The server's message, on one line.
        message: String,
    },
    /// The network failed: the server cannot be reached, or the connection
    /// broke. The operating system's words, on one line.
    #[error("{0}")]
    Network(String),
    /// Anything else the driver reports (protocol, options), on one line.
    #[error("{0}")]
    Driver(String),
}

impl Failure {
    /// Sorts a driver error.
    pub fn of(e: &mysql_async::Error) -> Failure {
        match e {
            mysql_async::Error::Server(s) if s.code == ACCESS_DENIED => Failure::AccessDenied,
            mysql_async::Error::Server(s) => Failure::Server {
                code: s.code,
                state: s.state.clone(),
                message: one_line(&s.message),
            },
            mysql_async::Error::Io(io) => Failure::Network(one_line(&io.to_string())),
            other => Failure::Driver(one_line(&other.to_string())),
        }
    }

    /// The server's error number, when the server answered.
    pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
        match e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.to_owned(),
            state: "28000".to_owned(),
        })
    }

    #[test]
    fn a_refused_login_is_access_denied() {
        let e = server_error(1045, "Access denied for user 'u'@'h'");
        assert_eq!(Failure::of(&e), Failure::AccessDenied);
        assert_eq!(Failure::server_code(&e), Some(1045));
    }

    #[test]
    fn other_server_errors_keep_code_state_and_one_line() {
        let e = server_error(1146, "Table 'a.b'\ndoesn't exist");
        assert_eq!(
            Failure::of(&e),
            Failure::Server {
                code: 1146,
                state: "28000".into(),
                message: "Table 'a.b' doesn't exist".into(),
            }
        );
    }

    #[test]
    fn a_failure_prints_as_one_line_with_the_server_code() {
        let e = server_error(1146, "Table 'a.b'\ndoesn't exist");
        assert_eq!(
            Failure::of(&e).to_string(),
            "error 1146 (28000): Table 'a.b' doesn't exist"
        );
        assert_eq!(Failure::AccessDenied.to_string(), "access denied");
    }

    #[test]
    fn io_errors_are_the_network() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nhere");
        let e = mysql_async::Error::Io(mysql_async::IoError::Io(io));
        assert_eq!(
            Failure::of(&e),
            Failure::Network("Input/output error: refused here".into())
        );
        assert_eq!(Failure::server_code(&e), None);
    }
}
