//! The crate's error type.
//!
//! Cache reads through [`FlagCache`](crate::FlagCache) never return errors (a failure is a miss);
//! the inherent `try_*` methods, constructors and builders do, with this type.

use std::fmt;

/// What went wrong, in a form a caller can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A flag id or definition failed validation.
    InvalidFlag,
    /// A builder or constructor was given a configuration that cannot work.
    InvalidConfig,
    /// More definitions were offered than the cache can hold.
    CapacityExceeded,
    /// A write carried a lower version than the one already cached, and was refused.
    StaleVersion,
    /// A backend (Redis, or a [`FlagSource`](crate::FlagSource)) could not be reached or the
    /// connection broke.
    Unavailable,
    /// A backend did not answer within its timeout.
    Timeout,
    /// A backend answered with an error (a refused password, a key of the wrong type, a
    /// failed script).
    Backend,
    /// A stored value is not a valid definition of the flag it is stored under (garbage bytes,
    /// wrong JSON, an oversized value, another flag's definition).
    Corrupt,
}

/// The error returned by constructors, builders and the `try_*` methods.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` saying `message`: for [`FlagSource`](crate::FlagSource)
    /// implementations and other code that reports through this crate.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn invalid_flag(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFlag, message)
    }

    pub(crate) fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Attaches the error that caused this one (returned by `std::error::Error::source`).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when a write was refused because the cache holds a newer version.
    pub fn is_stale_version(&self) -> bool {
        self.kind == ErrorKind::StaleVersion
    }

    /// True when a backend timed out or could not be reached: worth a retry later.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// True when the error comes from configuration (fix the builder call, not the data).
    pub fn is_config(&self) -> bool {
        self.kind == ErrorKind::InvalidConfig
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::InvalidFlag => "invalid flag",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::CapacityExceeded => "capacity exceeded",
            ErrorKind::StaleVersion => "stale version refused",
            ErrorKind::Unavailable => "backend unavailable",
            ErrorKind::Timeout => "backend timed out",
            ErrorKind::Backend => "backend error",
            ErrorKind::Corrupt => "corrupt stored value",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
