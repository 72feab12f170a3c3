//! [`FlagValue`] and [`FlagKind`]: what a flag serves.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a flag's values; every value a flag can serve has the kind of its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// `true` or `false`.
    Boolean,
    /// A UTF-8 string.
    String,
    /// A finite `f64`.
    Number,
    /// Any JSON value.
    Json,
}

impl fmt::Display for FlagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Number => "number",
            Self::Json => "json",
        })
    }
}

/// A value a flag serves. JSON: `{"type": "boolean", "value": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FlagValue {
    /// An on/off switch.
    Boolean(bool),
    /// A string, such as a variant name.
    String(String),
    /// A number; must be finite.
    Number(f64),
    /// Arbitrary JSON configuration.
    Json(serde_json::Value),
}

impl FlagValue {
    /// The kind of this value.
    pub fn kind(&self) -> FlagKind {
        match self {
            Self::Boolean(_) => FlagKind::Boolean,
            Self::String(_) => FlagKind::String,
            Self::Number(_) => FlagKind::Number,
            Self::Json(_) => FlagKind::Json,
        }
    }

    /// The boolean, if this is a [`FlagValue::Boolean`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is a [`FlagValue::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a [`FlagValue::Number`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The JSON value, if this is a [`FlagValue::Json`].
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Json(v) => Some(v),
            _ => None,
        }
    }
}

impl From<bool> for FlagValue {
    fn from(b: bool) -> Self {
        Self::Boolean(b)
    }
}

impl From<&str> for FlagValue {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for FlagValue {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<f64> for FlagValue {
    fn from(n: f64) -> Self {
        Self::Number(n)
    }
}
