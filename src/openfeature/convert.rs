//! Between OpenFeature's types and flagcache's: the evaluation context in; the served value,
//! its variant and its reason out.

use crate::evaluate::{EvalContext, Reason};
use crate::flag::{FlagDefinition, FlagValue, Serve};
use open_feature::{EvaluationContext, EvaluationContextFieldValue, EvaluationReason, StructValue};
use serde_json::{Number, Value as Json};

/// The largest integer a JSON number (an `f64`) holds exactly.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The evaluation context as flagcache reads it: the targeting key is the context's key, the
/// custom fields its attributes (date-times as RFC 3339 strings in UTC, structs as JSON
/// objects). Fields flagcache cannot read (a non-finite float, a struct of a type it does not
/// know) are left out, as absent attributes. A custom field named `key` does not replace the
/// targeting key; without a targeting key, the attribute `key` is that field, or absent (not
/// the empty string: a rollout by `key` then places nobody).
pub(super) fn context(ctx: &EvaluationContext) -> EvalContext {
    let mut out = EvalContext::new(ctx.targeting_key.as_deref().unwrap_or_default());
    out.attributes.reserve(ctx.custom_fields.len() + 1);
    for (name, value) in &ctx.custom_fields {
        if name == "key" && ctx.targeting_key.is_some() {
            continue;
        }
        if let Some(value) = field(value) {
            out.attributes.insert(name.clone(), value);
        }
    }
    if ctx.targeting_key.is_none() {
        // `null` reads as absent; the context's own key (`""`) is then never used.
        out.attributes.entry("key".to_owned()).or_insert(Json::Null);
    }
    out
}

fn field(value: &EvaluationContextFieldValue) -> Option<Json> {
    match value {
        EvaluationContextFieldValue::Bool(b) => Some(Json::Bool(*b)),
        EvaluationContextFieldValue::Int(i) => Some(Json::from(*i)),
        EvaluationContextFieldValue::Float(f) => Number::from_f64(*f).map(Json::Number),
        EvaluationContextFieldValue::String(s) => Some(Json::String(s.clone())),
        EvaluationContextFieldValue::DateTime(t) => t
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
            .map(Json::String),
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(s) = any.downcast_ref::<StructValue>() {
                Some(struct_to_json(s))
            } else {
                any.downcast_ref::<Json>().cloned()
            }
        }
    }
}

fn struct_to_json(s: &StructValue) -> Json {
    Json::Object(
        s.fields
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), value_to_json(v)?)))
            .collect(),
    )
}

fn value_to_json(v: &open_feature::Value) -> Option<Json> {
    Some(match v {
        open_feature::Value::Bool(b) => Json::Bool(*b),
        open_feature::Value::Int(i) => Json::from(*i),
        open_feature::Value::Float(f) => Json::Number(Number::from_f64(*f)?),
        open_feature::Value::String(s) => Json::String(s.clone()),
        open_feature::Value::Array(a) => Json::Array(a.iter().filter_map(value_to_json).collect()),
        open_feature::Value::Struct(s) => struct_to_json(s),
    })
}

/// A JSON object as an OpenFeature struct; `None` for any other JSON. `null`s are left out
/// (OpenFeature values have no null), in arrays too, so the elements after a `null` move up
/// one place; integers beyond `i64` become floats.
pub(super) fn json_to_struct(json: &Json) -> Option<StructValue> {
    match json_to_value(json)? {
        open_feature::Value::Struct(s) => Some(s),
        _ => None,
    }
}

fn json_to_value(json: &Json) -> Option<open_feature::Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => open_feature::Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => open_feature::Value::Int(i),
            None => open_feature::Value::Float(n.as_f64()?),
        },
        Json::String(s) => open_feature::Value::String(s.clone()),
        Json::Array(a) => open_feature::Value::Array(a.iter().filter_map(json_to_value).collect()),
        Json::Object(o) => {
            let mut s = StructValue::default();
            for (k, v) in o {
                if let Some(v) = json_to_value(v) {
                    s.add_field(k.clone(), v);
                }
            }
            open_feature::Value::Struct(s)
        }
    })
}

/// A number served as an integer: integral and below 2^53 in magnitude (from 2^53 on, a JSON
/// number is no longer exact: 2^53 + 1 reads back as 2^53).
pub(super) fn integer(value: &FlagValue) -> Option<i64> {
    match value {
        FlagValue::Number(x) if x.fract() == 0.0 && x.abs() < EXACT_INT => Some(*x as i64),
        _ => None,
    }
}

/// The variant name and the OpenFeature reason of an evaluation of `def` for `ctx`: `default`
/// (served the default value: `Disabled`, or `Static` for a flag with no rules and no rollout,
/// else `Default`), `rule-N` (`TargetingMatch`; `rule-N/rollout-M` when the rule serves the
/// M-th bucket of its rollout), `rollout-N` (the N-th bucket of the fallthrough rollout:
/// `Split`). A definition the fail-safe served past its TTL is `STALE` whatever it
/// served.
pub(super) fn variant_and_reason(
    def: &FlagDefinition,
    ctx: &EvalContext,
    reason: Reason,
    stale: bool,
) -> (String, EvaluationReason) {
    let (variant, reason) = match reason {
        Reason::Disabled => ("default".to_owned(), EvaluationReason::Disabled),
        Reason::RuleMatch { index } => {
            // A rule serving a rollout: the bucket too, so that a variant names one value.
            let bucket = def.rules.get(index).and_then(|rule| match &rule.serve {
                Serve::Rollout(r) => r.bucket(def.id.as_str(), ctx).and_then(|b| r.index_at(b)),
                Serve::Value(_) => None,
            });
            let variant = match bucket {
                Some(n) => format!("rule-{index}/rollout-{n}"),
                None => format!("rule-{index}"),
            };
            (variant, EvaluationReason::TargetingMatch)
        }
        Reason::Rollout { bucket } => {
            let n = def
                .rollout
                .as_ref()
                .and_then(|r| r.index_at(bucket))
                .unwrap_or_default();
            (format!("rollout-{n}"), EvaluationReason::Split)
        }
        Reason::Default if def.rules.is_empty() && def.rollout.is_none() => {
            ("default".to_owned(), EvaluationReason::Static)
        }
        Reason::Default => ("default".to_owned(), EvaluationReason::Default),
    };
    if stale {
        (variant, EvaluationReason::Other("STALE".to_owned()))
    } else {
        (variant, reason)
    }
}
