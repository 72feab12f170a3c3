//! [`Rollout`]: a percentage split of contexts over values.

use serde::{Deserialize, Serialize};

use super::{FlagKind, FlagValue, check_value};

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

    pub(super) fn check(&self, kind: FlagKind) -> std::result::Result<(), String> {
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
