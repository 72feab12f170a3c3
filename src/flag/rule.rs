//! Targeting: [`TargetingRule`], [`Clause`], [`Operator`] and what a rule serves.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{FlagKind, FlagValue, Rollout, check_value};

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

    pub(super) fn check(&self, kind: FlagKind) -> std::result::Result<(), String> {
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

    pub(super) fn check(&self) -> std::result::Result<(), String> {
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
