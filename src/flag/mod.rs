//! The flag model: ids, values, definitions, targeting rules and percentage rollouts.
//!
//! A [`FlagDefinition`] is plain data with public fields. The constructors validate; after
//! changing fields by hand (or through the `with_*` setters), call
//! [`validate`](FlagDefinition::validate). [`FlagDefinition::from_json`] decodes *and*
//! validates, so bytes from Redis or a database never yield an invalid definition.
//!
//! The JSON shape, with every optional field shown:
//!
//! ```json
//! {
//!   "id": "checkout.new-flow", "name": "New checkout", "description": "", "enabled": true,
//!   "default_value": { "type": "boolean", "value": false },
//!   "rules": [{ "id": "staff", "serve": { "value": { "type": "boolean", "value": true } },
//!               "clauses": [{ "attribute": "email", "op": "ends_with",
//!                             "values": ["@example.com"], "negate": false }] }],
//!   "rollout": { "bucket_by": "key", "salt": "2024-q3",
//!                "buckets": [{ "value": { "type": "boolean", "value": true }, "weight": 25000 },
//!                            { "value": { "type": "boolean", "value": false }, "weight": 75000 }] },
//!   "tags": ["checkout"], "version": 7
//! }
//! ```
//!
//! Only `id`, `name` and `default_value` are required; `enabled` defaults to `true`, `version`
//! to `1`, `bucket_by` to `"key"`, the rest to empty. Unknown fields are ignored, so a newer
//! writer can add fields without breaking older readers.

mod id;
mod rollout;
mod rule;
mod value;

use id::check_id;
pub use id::{FlagId, MAX_ID_LEN};
pub use rollout::{Rollout, WeightedValue};
pub use rule::{Clause, Operator, Serve, TargetingRule};
pub use value::{FlagKind, FlagValue};

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A flag definition as the source of truth stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDefinition {
    /// The flag's id (also its cache key).
    pub id: FlagId,
    /// A human-readable name; 1..=[`FlagDefinition::MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: String,
    /// When false, evaluation serves `default_value` and ignores rules and rollout.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// What is served when the flag is disabled or nothing else applies.
    pub default_value: FlagValue,
    /// Targeting rules, evaluated in order; the first match wins.
    #[serde(default)]
    pub rules: Vec<TargetingRule>,
    /// The fallthrough when no rule matches; without it, `default_value` is served.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Labels for humans and tooling.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Monotonic per flag, set by the source of truth; caches refuse to go backwards.
    #[serde(default = "default_version")]
    pub version: u64,
}

fn default_enabled() -> bool {
    true
}

fn default_version() -> u64 {
    1
}

impl FlagDefinition {
    /// The longest name accepted, in bytes.
    pub const MAX_NAME_LEN: usize = 256;
    /// The most targeting rules a flag may have.
    pub const MAX_RULES: usize = 1_000;

    /// A validated, enabled definition at version 1 with no rules and no rollout.
    pub fn new(id: &str, name: &str, default_value: FlagValue) -> Result<Self> {
        let def = Self {
            id: FlagId::new(id),
            name: name.to_owned(),
            description: String::new(),
            enabled: true,
            default_value,
            rules: Vec::new(),
            rollout: None,
            tags: Vec::new(),
            version: 1,
        };
        def.validate()?;
        Ok(def)
    }

    /// A boolean flag; see [`FlagDefinition::new`].
    pub fn new_boolean(id: &str, name: &str, default: bool) -> Result<Self> {
        Self::new(id, name, FlagValue::Boolean(default))
    }

    /// A string flag; see [`FlagDefinition::new`].
    pub fn new_string(id: &str, name: &str, default: impl Into<String>) -> Result<Self> {
        Self::new(id, name, FlagValue::String(default.into()))
    }

    /// A number flag (the default must be finite); see [`FlagDefinition::new`].
    pub fn new_number(id: &str, name: &str, default: f64) -> Result<Self> {
        Self::new(id, name, FlagValue::Number(default))
    }

    /// A JSON flag; see [`FlagDefinition::new`].
    pub fn new_json(id: &str, name: &str, default: serde_json::Value) -> Result<Self> {
        Self::new(id, name, FlagValue::Json(default))
    }

    /// Sets the version.
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Appends a targeting rule (evaluated after the ones already present).
    #[must_use]
    pub fn with_rule(mut self, rule: TargetingRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the fallthrough rollout.
    #[must_use]
    pub fn with_rollout(mut self, rollout: Rollout) -> Self {
        self.rollout = Some(rollout);
        self
    }

    /// Enables or disables the flag.
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Replaces the tags.
    #[must_use]
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Checks every rule of the model; the error names the field and the problem.
    pub fn validate(&self) -> Result<()> {
        check_id(self.id.as_str()).map_err(Error::invalid_flag)?;
        self.check_body()
            .map_err(|msg| Error::invalid_flag(format!("flag `{}`: {msg}", self.id)))
    }

    fn check_body(&self) -> std::result::Result<(), String> {
        if self.name.is_empty() {
            return Err("name is empty".to_owned());
        }
        if self.name.len() > Self::MAX_NAME_LEN {
            let len = self.name.len();
            return Err(format!(
                "name is {len} bytes long; at most {} allowed",
                Self::MAX_NAME_LEN
            ));
        }
        let kind = self.default_value.kind();
        check_value(&self.default_value, kind, format_args!("default_value"))?;
        if self.rules.len() > Self::MAX_RULES {
            let n = self.rules.len();
            return Err(format!("{n} rules; at most {} allowed", Self::MAX_RULES));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.check(kind)
                .map_err(|msg| format!("rules[{i}] (`{}`): {msg}", rule.id.escape_debug()))?;
        }
        if let Some(rollout) = &self.rollout {
            rollout
                .check(kind)
                .map_err(|msg| format!("rollout: {msg}"))?;
        }
        Ok(())
    }

    /// Decodes a definition from JSON and validates it. Never panics, whatever the bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let def: Self = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid_flag(format!("cannot decode flag definition JSON: {e}")).with_source(e)
        })?;
        def.validate()?;
        Ok(def)
    }

    /// Encodes the definition as JSON; [`FlagDefinition::from_json`] reads it back equal.
    pub fn to_json(&self) -> Vec<u8> {
        // serde_json fails only on a non-string map key or an error raised by a `Serialize`
        // impl; this type has neither (non-finite numbers become `null`), and writing to a
        // `Vec` cannot fail, so the fallback is unreachable.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Checks a served value; the message starts with `field`.
pub(super) fn check_value(
    value: &FlagValue,
    kind: FlagKind,
    field: fmt::Arguments<'_>,
) -> std::result::Result<(), String> {
    if value.kind() != kind {
        return Err(format!(
            "{field} is a {} but default_value is a {kind}",
            value.kind()
        ));
    }
    match value {
        FlagValue::Number(n) if !n.is_finite() => {
            Err(format!("{field} is {n}; numbers must be finite"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
