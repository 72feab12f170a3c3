//! The synthetic workload: demo flags, users, misspelled ids and the per-thread key trace.
//!
//! Everything is derived from a seeded PRNG, so two runs evaluate the same flags for the same
//! users in the same order (only the timing differs).

use flagcache::{
    Clause, FlagDefinition, FlagValue, Operator, Result, Rollout, Serve, TargetingRule,
    WeightedValue,
};
use serde_json::json;
use std::collections::HashSet;

/// xorshift64*: tiny, fast and good enough to pick keys and users.
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream depends only on `seed` (mixed by splitmix64, never zero).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (multiply-shift: no division on the hot path).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TEAMS: &[&str] = &[
    "checkout",
    "search",
    "billing",
    "onboarding",
    "growth",
    "mobile",
    "payments",
    "notifications",
    "recs",
    "platform",
];
const FEATURES: &[&str] = &[
    "new-flow",
    "fast-path",
    "redesign",
    "one-click",
    "smart-retry",
    "v2-api",
    "dark-mode",
    "inline-help",
    "batch-export",
    "live-preview",
    "price-test",
    "lazy-load",
];
const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "NL", "ES"];
const PLANS: &[&str] = &["free", "free", "free", "pro", "pro", "team", "enterprise"];
const APP_VERSIONS: &[&str] = &[
    "3.9.4", "4.0.0", "4.1.2", "4.2.0", "4.2.7", "4.3.1", "5.0.0",
];
const ROLLOUT_PERCENTS: &[u32] = &[1, 5, 10, 25, 50, 75];
const EXPERIMENT_SPLITS: &[[u32; 3]] = &[
    [34_000, 33_000, 33_000],
    [50_000, 25_000, 25_000],
    [80_000, 10_000, 10_000],
];

/// `n` validated demo flags, named `team.feature-i`: 30 % kill switches, 30 % percentage
/// rollouts, 20 % A/B/C experiments, 15 % numeric configs, 5 % JSON configs; 4 % disabled.
pub fn demo_flags(n: usize, seed: u64) -> Result<Vec<FlagDefinition>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let team = *rng.pick(TEAMS);
            let id = format!("{team}.{}-{i}", rng.pick(FEATURES));
            let (kind, def) = match rng.below(100) {
                0..30 => ("kill-switch", kill_switch(&mut rng, &id)?),
                30..60 => ("rollout", percentage_rollout(&mut rng, &id)?),
                60..80 => ("experiment", experiment(&mut rng, &id)?),
                80..95 => ("number", numeric_config(&mut rng, &id)?),
                _ => ("json", json_config(&mut rng, &id)?),
            };
            let def = def
                .with_enabled(!rng.chance(0.04))
                .with_version(1 + rng.below(40) as u64)
                .with_tags([team, kind]);
            // The `with_*` setters skip validation; check the finished definition.
            def.validate()?;
            Ok(def)
        })
        .collect()
}

fn staff_only() -> Clause {
    Clause::new("email", Operator::EndsWith, ["@example.com"])
}

/// On by default, switched off in a couple of countries.
fn kill_switch(rng: &mut Rng, id: &str) -> Result<FlagDefinition> {
    let blocked = [*rng.pick(COUNTRIES), *rng.pick(COUNTRIES)];
    Ok(
        FlagDefinition::new_boolean(id, "Kill switch", true)?.with_rule(
            TargetingRule::new("blocked-regions", Serve::Value(false.into()))
                .with_clause(Clause::new("country", Operator::In, blocked)),
        ),
    )
}

/// Staff always on, outdated apps always off, everyone else by a salted percentage.
fn percentage_rollout(rng: &mut Rng, id: &str) -> Result<FlagDefinition> {
    let percent = *rng.pick(ROLLOUT_PERCENTS) * 1_000;
    let rollout = Rollout::new([
        WeightedValue::new(true, percent),
        WeightedValue::new(false, Rollout::TOTAL_WEIGHT - percent),
    ])
    .with_salt(format!("{id}-{}", rng.below(4)));
    let min_version = *rng.pick(&APP_VERSIONS[1..]);
    Ok(FlagDefinition::new_boolean(id, "Gradual rollout", false)?
        .with_rule(TargetingRule::new("staff", Serve::Value(true.into())).with_clause(staff_only()))
        .with_rule(
            // Negated: a present, older version matches; web users (no version) fall through.
            TargetingRule::new("outdated-app", Serve::Value(false.into())).with_clause(
                Clause::new("app_version", Operator::SemVerAtLeast, [min_version]).negated(),
            ),
        )
        .with_rollout(rollout))
}

/// An A/B/C test; enterprise customers are kept on control, B2B tests bucket by organisation.
fn experiment(rng: &mut Rng, id: &str) -> Result<FlagDefinition> {
    let split = rng.pick(EXPERIMENT_SPLITS);
    let variants = ["control", "variant-a", "variant-b"];
    let mut rollout =
        Rollout::new((0..3).map(|v| WeightedValue::new(variants[v], split[v]))).with_salt(id);
    if rng.chance(0.25) {
        rollout = rollout.with_bucket_by("org_id");
    }
    Ok(FlagDefinition::new_string(id, "Experiment", "control")?
        .with_rule(
            TargetingRule::new("enterprise-holdout", Serve::Value("control".into()))
                .with_clause(Clause::new("plan", Operator::In, ["enterprise"])),
        )
        .with_rollout(rollout))
}

/// A tunable number, raised for paying plans and for large or older-audience accounts.
fn numeric_config(rng: &mut Rng, id: &str) -> Result<FlagDefinition> {
    let base = [10.0, 30.0, 100.0, 250.0][rng.below(4)];
    let def = FlagDefinition::new_number(id, "Numeric config", base)?.with_rule(
        TargetingRule::new("big-accounts", Serve::Value((base * 10.0).into()))
            .with_clause(Clause::new("seats", Operator::GreaterThan, [100])),
    );
    let def =
        if rng.chance(0.5) {
            def.with_rule(
                TargetingRule::new("paid", Serve::Value((base * 4.0).into())).with_clause(
                    Clause::new("plan", Operator::In, ["pro", "team", "enterprise"]),
                ),
            )
        } else {
            def.with_rule(
                TargetingRule::new("seniors", Serve::Value((base * 2.0).into()))
                    .with_clause(Clause::new("age", Operator::GreaterThan, [64])),
            )
        };
    Ok(def)
}

/// A structured config with an EU override.
fn json_config(rng: &mut Rng, id: &str) -> Result<FlagDefinition> {
    let attempts = 1 + rng.below(5);
    let global = json!({"max_items": 20, "regions": ["eu", "us"], "retry": {"attempts": attempts, "backoff_ms": 250}});
    let eu = json!({"max_items": 10, "regions": ["eu"], "retry": {"attempts": attempts, "backoff_ms": 500}});
    Ok(
        FlagDefinition::new_json(id, "JSON config", global)?.with_rule(
            TargetingRule::new("eu", Serve::Value(FlagValue::Json(eu))).with_clause(Clause::new(
                "country",
                Operator::In,
                ["DE", "FR", "NL", "ES"],
            )),
        ),
    )
}

/// `n` users with the attributes the rules read; some lack `app_version` (web) or `seats`.
pub fn demo_users(n: usize, seed: u64) -> Vec<flagcache::EvalContext> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let plan = *rng.pick(PLANS);
            let domain = if rng.chance(0.03) {
                "example.com"
            } else {
                "mail.test"
            };
            let mut ctx = flagcache::EvalContext::new(format!("user-{i}"))
                .with_attribute("country", *rng.pick(COUNTRIES))
                .with_attribute("plan", plan)
                .with_attribute("email", format!("user{i}@{domain}"))
                .with_attribute("age", 18 + rng.below(62))
                .with_attribute("org_id", format!("org-{}", rng.below(n / 20 + 1)));
            if rng.chance(0.7) {
                ctx = ctx.with_attribute("app_version", *rng.pick(APP_VERSIONS));
            }
            if matches!(plan, "team" | "enterprise") {
                ctx = ctx.with_attribute("seats", 2 + rng.below(500));
            }
            ctx
        })
        .collect()
}

/// `n` misspellings of real ids (an adjacent swap or a dropped character), none of them real.
pub fn typos(ids: &[&str], n: usize, seed: u64) -> Vec<String> {
    let real: HashSet<&str> = ids.iter().copied().collect();
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n && !ids.is_empty() {
        let mut chars: Vec<char> = rng.pick(ids).chars().collect();
        let at = rng.below(chars.len().saturating_sub(1).max(1));
        if rng.chance(0.5) && chars.len() > 1 {
            chars.swap(at, at + 1);
        } else {
            chars.remove(at);
        }
        let typo: String = chars.into_iter().collect();
        if !typo.is_empty() && !real.contains(typo.as_str()) {
            out.push(typo);
        }
    }
    out
}

/// `len` key indices for one thread: `0..flags` Zipf-like, plus `miss_rate` of indices in
/// `flags..flags + typos` (the misspelled ids).
///
/// Rank `r` is drawn as `(flags + 1)^u` for uniform `u`, the continuous 1/r law: the hottest
/// 20 % of 10 000 flags get about 82 % of the evaluations. Drawn up front so the hot loop only
/// reads the next entry.
pub fn key_trace(
    rng: &mut Rng,
    flags: usize,
    typos: usize,
    miss_rate: f64,
    len: usize,
) -> Vec<u32> {
    let ln_n = ((flags + 1) as f64).ln();
    (0..len)
        .map(|_| {
            let index = if typos > 0 && rng.chance(miss_rate) {
                flags + rng.below(typos)
            } else {
                let rank = (rng.unit() * ln_n).exp() as usize; // 1..=flags
                rank.clamp(1, flags) - 1
            };
            index as u32
        })
        .collect()
}
