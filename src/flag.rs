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

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
// `Arc` only shares immutable bytes here; `crate::sync` re-exports this same std type.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest flag id [`FlagId::parse`] accepts, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// The name of a flag: a cheap-to-clone shared string, used as the cache key.
///
/// [`FlagId::new`] accepts any string (a lookup for an id that cannot exist is simply a miss);
/// [`FlagId::parse`] checks the id rules: 1..=[`MAX_ID_LEN`] bytes of ASCII letters, digits,
/// `.`, `_` and `-`. Equality, ordering and hashing are those of the `str`, so a
/// `HashMap<FlagId, _>` can be queried with a `&str`. Serialized as a plain JSON string;
/// deserializing does not validate (a definition's id is checked by
/// [`FlagDefinition::validate`], which [`FlagDefinition::from_json`] runs).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlagId(Arc<str>);

impl FlagId {
    /// Wraps any string, without validation.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// Wraps `id` if it is a valid flag id, or says which rule it breaks.
    pub fn parse(id: impl AsRef<str>) -> Result<Self> {
        check_id(id.as_ref()).map_err(Error::invalid_flag)?;
        Ok(Self::new(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the flag id rules; the message names the problem.
fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("flag id is empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "flag id is {} bytes long; at most {MAX_ID_LEN} allowed",
            id.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    match id.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((at, c)) => Err(format!(
            "flag id `{}` contains {c:?} at byte {at}; allowed: ASCII letters, digits, '.', '_', '-'",
            id.escape_debug()
        )),
        None => Ok(()),
    }
}

impl PartialEq for FlagId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for FlagId {}

impl PartialEq<str> for FlagId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FlagId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for FlagId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FlagId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for FlagId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly `str`'s hash: required by `Borrow<str>`.
        self.as_str().hash(state);
    }
}

impl Borrow<str> for FlagId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for FlagId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for FlagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FlagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for FlagId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for FlagId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

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
fn check_value(
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

/// A targeting rule: when all its clauses match the context, it serves `serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetingRule {
    /// An id for humans and for tracing which rule matched.
    #[serde(default)]
    pub id: String,
    /// Conditions that must ALL match (a rule without clauses matches every context).
    #[serde(default)]
    pub clauses: Vec<Clause>,
    /// What a match serves.
    pub serve: Serve,
}

impl TargetingRule {
    /// The most clauses a rule may have.
    pub const MAX_CLAUSES: usize = 100;

    /// A rule without clauses (it matches everything until clauses are added).
    pub fn new(id: impl Into<String>, serve: Serve) -> Self {
        Self {
            id: id.into(),
            clauses: Vec::new(),
            serve,
        }
    }

    /// Appends a clause.
    #[must_use]
    pub fn with_clause(mut self, clause: Clause) -> Self {
        self.clauses.push(clause);
        self
    }

    fn check(&self, kind: FlagKind) -> std::result::Result<(), String> {
        if self.clauses.len() > Self::MAX_CLAUSES {
            let n = self.clauses.len();
            return Err(format!(
                "{n} clauses; at most {} allowed",
                Self::MAX_CLAUSES
            ));
        }
        for (i, clause) in self.clauses.iter().enumerate() {
            clause
                .check()
                .map_err(|msg| format!("clauses[{i}]: {msg}"))?;
        }
        match &self.serve {
            Serve::Value(v) => check_value(v, kind, format_args!("serve.value")),
            Serve::Rollout(r) => r.check(kind).map_err(|msg| format!("serve.rollout: {msg}")),
        }
    }
}

/// What a matching rule serves. JSON: `{"value": {...}}` or `{"rollout": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// One fixed value.
    Value(FlagValue),
    /// A percentage split.
    Rollout(Rollout),
}

/// One condition on a context attribute.
///
/// It matches when the attribute is present (and not JSON `null`) and `op` holds against at
/// least one of `values`; `negate` inverts that, except that a missing attribute never matches.
/// An array attribute matches when any of its elements does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clause {
    /// The context attribute to test; `"key"` is the context key unless overridden.
    pub attribute: String,
    /// The comparison.
    pub op: Operator,
    /// The operands; the clause holds if `op` holds for any of them.
    #[serde(default)]
    pub values: Vec<serde_json::Value>,
    /// Inverts the result for a present attribute.
    #[serde(default)]
    pub negate: bool,
}

impl Clause {
    /// A clause testing `attribute` with `op` against `values`.
    pub fn new(
        attribute: impl Into<String>,
        op: Operator,
        values: impl IntoIterator<Item = impl Into<serde_json::Value>>,
    ) -> Self {
        Self {
            attribute: attribute.into(),
            op,
            values: values.into_iter().map(Into::into).collect(),
            negate: false,
        }
    }

    /// The same clause, inverted.
    #[must_use]
    pub fn negated(mut self) -> Self {
        self.negate = !self.negate;
        self
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.attribute.is_empty() {
            return Err("attribute is empty".to_owned());
        }
        let op = self.op;
        for (i, v) in self.values.iter().enumerate() {
            let ok = match op {
                Operator::In => true,
                Operator::StartsWith | Operator::EndsWith | Operator::Contains => v.is_string(),
                Operator::GreaterThan | Operator::LessThan => v.is_number(),
                Operator::SemVerAtLeast => {
                    v.as_str().is_some_and(crate::evaluate::is_dotted_version)
                }
            };
            if !ok {
                let want = match op {
                    Operator::GreaterThan | Operator::LessThan => "a number",
                    Operator::SemVerAtLeast => "a dotted numeric version such as \"1.2.10\"",
                    _ => "a string",
                };
                return Err(format!("values[{i}] is {v}; operator {op} needs {want}"));
            }
        }
        Ok(())
    }
}

/// How a clause compares the attribute with its values. Regular expressions are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// The attribute equals one of the values (numbers by value: `1` equals `1.0`).
    In,
    /// The string attribute starts with one of the string values.
    StartsWith,
    /// The string attribute ends with one of the string values.
    EndsWith,
    /// The string attribute contains one of the string values.
    Contains,
    /// The number attribute is greater than one of the values.
    GreaterThan,
    /// The number attribute is less than one of the values.
    LessThan,
    /// The version string attribute (dotted numbers, such as `"1.2.10"`; missing parts count as
    /// 0) is at least one of the values.
    #[serde(rename = "semver_at_least")]
    SemVerAtLeast,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::In => "in",
            Self::StartsWith => "starts_with",
            Self::EndsWith => "ends_with",
            Self::Contains => "contains",
            Self::GreaterThan => "greater_than",
            Self::LessThan => "less_than",
            Self::SemVerAtLeast => "semver_at_least",
        })
    }
}

/// A percentage split of contexts over values, by a stable hash of one attribute.
///
/// See [`Rollout::bucket`] for the hash; the weights must sum to [`Rollout::TOTAL_WEIGHT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The context attribute whose value is hashed (default `"key"`).
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
    /// Mixed into the hash; change it to reshuffle who lands where.
    #[serde(default)]
    pub salt: String,
    /// The values and their weights, walked in order.
    pub buckets: Vec<WeightedValue>,
}

fn default_bucket_by() -> String {
    "key".to_owned()
}

impl Rollout {
    /// The sum the weights must have: weight 1 is 0.001 %.
    pub const TOTAL_WEIGHT: u32 = 100_000;
    /// The most buckets a rollout may have.
    pub const MAX_BUCKETS: usize = 1_000;

    /// A rollout over `buckets`, bucketed by `"key"` with an empty salt.
    pub fn new(buckets: impl IntoIterator<Item = WeightedValue>) -> Self {
        Self {
            bucket_by: default_bucket_by(),
            salt: String::new(),
            buckets: buckets.into_iter().collect(),
        }
    }

    /// Sets the salt.
    #[must_use]
    pub fn with_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = salt.into();
        self
    }

    /// Sets the attribute to bucket by.
    #[must_use]
    pub fn with_bucket_by(mut self, attribute: impl Into<String>) -> Self {
        self.bucket_by = attribute.into();
        self
    }

    fn check(&self, kind: FlagKind) -> std::result::Result<(), String> {
        if self.bucket_by.is_empty() {
            return Err("bucket_by is empty".to_owned());
        }
        if self.buckets.is_empty() {
            return Err("no buckets; at least one needed".to_owned());
        }
        if self.buckets.len() > Self::MAX_BUCKETS {
            let n = self.buckets.len();
            return Err(format!(
                "{n} buckets; at most {} allowed",
                Self::MAX_BUCKETS
            ));
        }
        for (i, b) in self.buckets.iter().enumerate() {
            check_value(&b.value, kind, format_args!("buckets[{i}].value"))?;
        }
        let sum: u64 = self.buckets.iter().map(|b| u64::from(b.weight)).sum();
        if sum != u64::from(Self::TOTAL_WEIGHT) {
            return Err(format!(
                "weights sum to {sum}; must be exactly {}",
                Self::TOTAL_WEIGHT
            ));
        }
        Ok(())
    }
}

/// One bucket of a [`Rollout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedValue {
    /// The value served to contexts in this bucket.
    pub value: FlagValue,
    /// The bucket's share, out of [`Rollout::TOTAL_WEIGHT`].
    pub weight: u32,
}

impl WeightedValue {
    /// A bucket serving `value` to `weight` / 100 000 of contexts.
    pub fn new(value: impl Into<FlagValue>, weight: u32) -> Self {
        Self {
            value: value.into(),
            weight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    fn err_msg<T: fmt::Debug>(r: Result<T>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidFlag);
        e.to_string()
    }

    fn boolean() -> FlagDefinition {
        FlagDefinition::new_boolean("f", "F", false).unwrap()
    }

    fn half_half() -> Rollout {
        Rollout::new([
            WeightedValue::new(true, 50_000),
            WeightedValue::new(false, 50_000),
        ])
    }

    #[test]
    fn id_validation() {
        assert!(err_msg(FlagId::parse("")).contains("flag id is empty"));
        assert!(err_msg(FlagId::parse("a".repeat(257))).contains("257 bytes long; at most 256"));
        assert_eq!(FlagId::parse("a".repeat(256)).unwrap().as_str().len(), 256);
        let msg = err_msg(FlagId::parse("a b"));
        assert!(
            msg.contains("flag id `a b` contains ' ' at byte 1; allowed: ASCII letters"),
            "{msg}"
        );
        assert!(err_msg(FlagId::parse("caf\u{e9}")).contains("'\u{e9}' at byte 3"));
        assert!(err_msg(FlagId::parse("a\nb")).contains("`a\\nb`"));
        assert_eq!(
            FlagId::parse("checkout.new-flow_2").unwrap(),
            "checkout.new-flow_2"
        );
        // `new` never fails: any string is a valid cache key.
        assert_eq!(FlagId::new("not valid!").as_str(), "not valid!");
        assert_eq!(FlagId::new(""), FlagId::from(String::new()));
    }

    #[test]
    fn id_behaves_like_str() {
        let id = FlagId::from("abc");
        let s = std::collections::hash_map::RandomState::new();
        assert_eq!(s.hash_one(&id), s.hash_one("abc"));
        let mut map = HashMap::new();
        map.insert(id.clone(), 1);
        assert_eq!(map.get("abc"), Some(&1));
        assert!(FlagId::new("a") < FlagId::new("b"));
        assert_eq!(format!("{id} {id:?}"), "abc \"abc\"");
        assert_eq!(AsRef::<str>::as_ref(&id), "abc");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
        assert_eq!(serde_json::from_str::<FlagId>("\"abc\"").unwrap(), id);
    }

    #[test]
    fn constructors() {
        let b = boolean();
        assert_eq!(
            (b.version, b.enabled, b.default_value.as_bool()),
            (1, true, Some(false))
        );
        assert!(b.rules.is_empty() && b.rollout.is_none() && b.description.is_empty());
        let s = FlagDefinition::new_string("s", "S", "blue").unwrap();
        assert_eq!(
            (s.default_value.kind(), s.default_value.as_str()),
            (FlagKind::String, Some("blue"))
        );
        let n = FlagDefinition::new_number("n", "N", 0.5).unwrap();
        assert_eq!(
            (n.default_value.kind(), n.default_value.as_f64()),
            (FlagKind::Number, Some(0.5))
        );
        let j = FlagDefinition::new_json("j", "J", json!({"a": [1]})).unwrap();
        assert_eq!(j.default_value.as_json(), Some(&json!({"a": [1]})));
        assert_eq!(j.default_value.as_bool(), None);
        assert!(err_msg(FlagDefinition::new_boolean("a b", "x", true)).contains("flag id `a b`"));
        assert!(
            err_msg(FlagDefinition::new_number("n", "N", f64::NAN))
                .contains("default_value is NaN")
        );
        let full = boolean()
            .with_version(9)
            .with_description("d")
            .with_enabled(false)
            .with_tags(["x", "y"])
            .with_rule(TargetingRule::new("r", Serve::Value(true.into())))
            .with_rollout(half_half());
        assert_eq!(
            (
                full.version,
                full.enabled,
                full.tags.len(),
                full.rules.len()
            ),
            (9, false, 2, 1)
        );
        full.validate().unwrap();
    }

    #[test]
    fn each_validation_failure() {
        let cases: Vec<(FlagDefinition, &str)> =
            vec![
                (
                    FlagDefinition {
                        id: FlagId::new("x y"),
                        ..boolean()
                    },
                    "flag id `x y` contains ' '",
                ),
                (
                    FlagDefinition {
                        name: String::new(),
                        ..boolean()
                    },
                    "flag `f`: name is empty",
                ),
                (
                    FlagDefinition {
                        name: "n".repeat(257),
                        ..boolean()
                    },
                    "name is 257 bytes long",
                ),
                (
                    boolean().with_rule(TargetingRule::new("r", Serve::Value("on".into()))),
                    "rules[0] (`r`): serve.value is a string but default_value is a boolean",
                ),
                (
                    FlagDefinition::new_number("n", "N", 1.0)
                        .unwrap()
                        .with_rule(TargetingRule::new("r", Serve::Value(f64::INFINITY.into()))),
                    "serve.value is inf; numbers must be finite",
                ),
                (
                    boolean().with_rollout(Rollout::new([WeightedValue::new(1.0, 100_000)])),
                    "rollout: buckets[0].value is a number but default_value is a boolean",
                ),
                (
                    FlagDefinition::new_number("n", "N", 1.0)
                        .unwrap()
                        .with_rollout(Rollout::new([WeightedValue::new(f64::NAN, 100_000)])),
                    "buckets[0].value is NaN",
                ),
                (
                    boolean().with_rollout(Rollout::new([])),
                    "rollout: no buckets",
                ),
                (
                    boolean().with_rollout(Rollout::new([WeightedValue::new(true, 99_999)])),
                    "weights sum to 99999; must be exactly 100000",
                ),
                (
                    boolean().with_rollout(Rollout::new([
                        WeightedValue::new(true, u32::MAX),
                        WeightedValue::new(true, u32::MAX),
                    ])),
                    "weights sum to 8589934590",
                ),
                (
                    boolean()
                        .with_rollout(Rollout::new(vec![WeightedValue::new(true, 100); 1_001])),
                    "1001 buckets; at most 1000",
                ),
                (
                    boolean().with_rollout(half_half().with_bucket_by("")),
                    "bucket_by is empty",
                ),
                (
                    FlagDefinition {
                        rules: vec![TargetingRule::new("r", Serve::Value(true.into())); 1_001],
                        ..boolean()
                    },
                    "1001 rules; at most 1000",
                ),
                (
                    boolean().with_rule(TargetingRule {
                        clauses: vec![Clause::new("a", Operator::In, [1]); 101],
                        ..TargetingRule::new("r", Serve::Value(true.into()))
                    }),
                    "rules[0] (`r`): 101 clauses; at most 100",
                ),
                (
                    boolean().with_rule(
                        TargetingRule::new("r", Serve::Value(true.into()))
                            .with_clause(Clause::new("", Operator::In, ["x"])),
                    ),
                    "clauses[0]: attribute is empty",
                ),
                (
                    boolean().with_rule(
                        TargetingRule::new("r", Serve::Value(true.into())).with_clause(
                            Clause::new("a", Operator::StartsWith, [json!("x"), json!(5)]),
                        ),
                    ),
                    "values[1] is 5; operator starts_with needs a string",
                ),
                (
                    boolean().with_rule(
                        TargetingRule::new("r", Serve::Value(true.into()))
                            .with_clause(Clause::new("a", Operator::LessThan, ["5"])),
                    ),
                    "operator less_than needs a number",
                ),
                (
                    boolean().with_rule(
                        TargetingRule::new("r", Serve::Value(true.into()))
                            .with_clause(Clause::new("a", Operator::SemVerAtLeast, ["1.2-beta"])),
                    ),
                    "operator semver_at_least needs a dotted numeric version",
                ),
                (
                    boolean().with_rule(TargetingRule::new(
                        "r",
                        Serve::Rollout(Rollout::new([WeightedValue::new("a", 100_000)])),
                    )),
                    "rules[0] (`r`): serve.rollout: buckets[0].value is a string",
                ),
            ];
        for (def, want) in cases {
            let msg = err_msg(def.validate());
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
        // At the limits is fine.
        let ok = boolean().with_rule(TargetingRule {
            clauses: vec![Clause::new("a", Operator::SemVerAtLeast, ["1.2.10"]); 100],
            ..TargetingRule::new("r", Serve::Value(true.into()))
        });
        ok.validate().unwrap();
        FlagDefinition {
            rules: vec![TargetingRule::new("r", Serve::Value(true.into())); 1_000],
            ..boolean()
        }
        .validate()
        .unwrap();
    }

    fn rich() -> FlagDefinition {
        FlagDefinition::new_json(
            "pricing.tiers",
            "Prix \u{1F4B8} \u{65e5}\u{672c}",
            json!({"a": [1, 2.5, null, {"b": "c"}]}),
        )
        .unwrap()
        .with_version(u64::MAX)
        .with_description("d\u{e9}j\u{e0} \"quoted\"\n")
        .with_tags(["t\u{1}", ""])
        .with_rule(
            TargetingRule::new(
                "beta",
                Serve::Value(FlagValue::Json(json!([0.1, 1e300, u64::MAX, i64::MIN]))),
            )
            .with_clause(Clause::new("email", Operator::EndsWith, ["@x.io"]).negated())
            .with_clause(Clause::new(
                "n",
                Operator::In,
                [json!(1), json!(-0.5), json!({"k": [true]})],
            )),
        )
        .with_rollout(
            Rollout::new([
                WeightedValue::new(FlagValue::Json(json!(f64::MAX)), 1),
                WeightedValue::new(FlagValue::Json(json!(5e-324)), 99_999),
            ])
            .with_salt("s")
            .with_bucket_by("org"),
        )
    }

    #[test]
    fn json_round_trip_hand_written() {
        let numbers = [
            0.1,
            1e300,
            -1e-300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            123_456_789.0,
        ];
        let mut defs = vec![
            rich(),
            boolean(),
            boolean().with_enabled(false).with_version(0),
        ];
        for n in numbers {
            defs.push(
                FlagDefinition::new_number("n", "N", n)
                    .unwrap()
                    .with_rollout(Rollout::new([WeightedValue::new(n, 100_000)])),
            );
        }
        for def in defs {
            let bytes = def.to_json();
            assert_eq!(
                FlagDefinition::from_json(&bytes).unwrap(),
                def,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn json_shape_and_minimal_input() {
        let v: serde_json::Value = serde_json::from_slice(&boolean().to_json()).unwrap();
        assert_eq!(
            v["default_value"],
            json!({"type": "boolean", "value": false})
        );
        let def = FlagDefinition::from_json(
            br#"{"id":"m","name":"M","default_value":{"type":"string","value":"x"},"future_field":1}"#,
        )
        .unwrap();
        assert_eq!(def, FlagDefinition::new_string("m", "M", "x").unwrap());
        let rule = r#"{"id":"m","name":"M","default_value":{"type":"boolean","value":false},
            "rules":[{"serve":{"value":{"type":"boolean","value":true}},
                      "clauses":[{"attribute":"v","op":"semver_at_least","values":["2.0"]}]}],
            "rollout":{"buckets":[{"value":{"type":"boolean","value":true},"weight":100000}]}}"#;
        let def = FlagDefinition::from_json(rule.as_bytes()).unwrap();
        assert_eq!(def.rules[0].clauses[0].op, Operator::SemVerAtLeast);
        assert_eq!(def.rollout.unwrap().bucket_by, "key");
    }

    #[test]
    fn from_json_rejects_bad_input() {
        let bad: &[&[u8]] = &[
            b"",
            b"\xff\xfe\x00garbage",
            b"null",
            b"[]",
            b"{}",
            br#"{"id":"m","name":"M","default_value":true}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":"yes"}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"color","value":1}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"number","value":1e400}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"number","value":null}}"#,
            br#"{"id":"m","name":"M","version":18446744073709551616,"default_value":{"type":"boolean","value":true}}"#,
            br#"{"id":"m","name":"M","version":-1,"default_value":{"type":"boolean","value":true}}"#,
            br#"{"id":7,"name":"M","default_value":{"type":"boolean","value":true}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true},"rollout":{"buckets":[{"value":{"type":"boolean","value":true},"weight":4294967296}]}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true},"rules":[{"serve":{"value":{"type":"boolean","value":true}},"clauses":[{"attribute":"a","op":"matches_regex","values":["."]}]}]}"#,
            br#"{"id":"m m","name":"M","default_value":{"type":"boolean","value":true}}"#,
            br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true}} trailing"#,
        ];
        for input in bad {
            assert!(
                FlagDefinition::from_json(input).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let deep = format!(
            r#"{{"id":"m","name":"M","default_value":{{"type":"json","value":{}}}}}"#,
            "[".repeat(100_000)
        );
        assert!(err_msg(FlagDefinition::from_json(deep.as_bytes())).contains("cannot decode"));
        let msg = err_msg(FlagDefinition::from_json(bad[6]));
        assert!(msg.contains("expected a boolean"), "{msg}");
        assert!(std::error::Error::source(&FlagDefinition::from_json(b"{").unwrap_err()).is_some());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn flag_value(kind: u8) -> BoxedStrategy<FlagValue> {
        match kind {
            0 => any::<bool>().prop_map(FlagValue::Boolean).boxed(),
            1 => ".*".prop_map(FlagValue::String).boxed(),
            2 => any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(FlagValue::Number)
                .boxed(),
            _ => json_value().prop_map(FlagValue::Json).boxed(),
        }
    }

    fn definition() -> impl Strategy<Value = FlagDefinition> {
        (0u8..4).prop_flat_map(|kind| {
            let rollout = (
                prop::collection::vec((flag_value(kind), 0u32..=100_000), 1..4),
                ".*",
                "[a-z]{1,5}",
            )
                .prop_map(|(mut buckets, salt, by)| {
                    let mut left = Rollout::TOTAL_WEIGHT;
                    for (_, w) in buckets.iter_mut() {
                        *w = (*w).min(left);
                        left -= *w;
                    }
                    if let Some(last) = buckets.last_mut() {
                        last.1 += left;
                    }
                    Rollout::new(buckets.into_iter().map(|(v, w)| WeightedValue::new(v, w)))
                        .with_salt(salt)
                        .with_bucket_by(by)
                });
            let clause = (
                "[a-z]{1,8}",
                prop::collection::vec(json_value(), 0..3),
                any::<bool>(),
            )
                .prop_map(|(a, vals, neg)| Clause {
                    attribute: a,
                    op: Operator::In,
                    values: vals,
                    negate: neg,
                });
            let rule = (".*", prop::collection::vec(clause, 0..3), flag_value(kind)).prop_map(
                |(id, clauses, v)| TargetingRule {
                    id,
                    clauses,
                    serve: Serve::Value(v),
                },
            );
            (
                "[a-zA-Z0-9._-]{1,40}",
                "\\PC{1,20}",
                ".*",
                any::<bool>(),
                flag_value(kind),
                prop::collection::vec(rule, 0..3),
                prop::option::of(rollout),
                prop::collection::vec(".*", 0..3),
                any::<u64>(),
            )
                .prop_map(
                    |(
                        id,
                        name,
                        description,
                        enabled,
                        default_value,
                        rules,
                        rollout,
                        tags,
                        version,
                    )| {
                        FlagDefinition {
                            id: FlagId::new(id),
                            name,
                            description,
                            enabled,
                            default_value,
                            rules,
                            rollout,
                            tags,
                            version,
                        }
                    },
                )
        })
    }

    proptest! {
        // No regression files: they would land in the source tree.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        // Needs serde_json's `float_roundtrip` feature: without it, serde_json parses some
        // floats (such as 2.017351698988807e285) one ULP off.
        #[test]
        fn json_round_trip(def in definition()) {
            def.validate().unwrap();
            prop_assert_eq!(FlagDefinition::from_json(&def.to_json()).unwrap(), def);
        }

        #[test]
        fn from_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = FlagDefinition::from_json(&bytes);
        }
    }
}
