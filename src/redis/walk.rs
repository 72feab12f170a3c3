//! A walk over the keys of a prefix on every primary (`SCAN MATCH`), for `clear` and
//! `load_all`, that does not miss keys moving while it runs.
//!
//! On one node it is one `SCAN`. On a cluster each primary is scanned in turn, and a key that a
//! resharding moves from a primary not yet scanned to one already scanned would be missed. So:
//! - a slot being migrated when the walk starts orders it: the migrating primary is scanned
//!   before the importing one (a key moved meanwhile is found on the second; keys may be seen
//!   twice, which both callers tolerate); migrations in both directions between two primaries
//!   cannot be ordered, and the walk fails as unavailable;
//! - when the walk ends, the slot map, the primaries' config epochs and the migrations must be
//!   as they were at its start; otherwise keys may have moved behind it, and the caller walks again (`WALKS` times at
//!   most, then fails as unavailable rather than return a partial answer as whole).

use super::RedisCache;
use super::conn::Conn;
use super::shards::{self, SlotMap};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Arc;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{FromRedisValue, Value};

/// Walks of a cluster that a moving layout may spoil before `clear` or `load_all` gives up.
pub(crate) const WALKS: usize = 3;

/// A cluster's layout as a walk saw it: the slot ranges and their primaries, each primary's
/// config epoch (a node bumps its own when a slot it imported becomes its: so a slot that
/// moved away and back during a walk still shows), and the migrations under way (migrating
/// primary, importing primary), by address.
#[derive(PartialEq)]
struct Layout {
    ranges: Vec<(u16, u16, (String, u16))>,
    epochs: Vec<String>,
    migrations: Vec<((String, u16), (String, u16))>,
}

/// The state of one walk.
pub(crate) struct KeyScan {
    /// The primaries still to walk (a slot of each; `None`: the single node), the current last.
    primaries: Vec<Option<u16>>,
    cursor: u64,
    /// On a cluster, the layout when the walk started.
    layout: Option<Layout>,
}

impl RedisCache {
    /// Starts a walk over the keys of this prefix on every primary (on one node, that node's).
    ///
    /// # Errors
    /// Connection errors and timeouts; [`ErrorKind::Unavailable`] when migrations under way
    /// cannot be ordered.
    pub(crate) async fn walk(&self) -> Result<KeyScan> {
        if self.shards.is_none() {
            return Ok(KeyScan {
                primaries: vec![None],
                cursor: 0,
                layout: None,
            });
        }
        let (map, layout, migrations) = self.layout().await?;
        let order = walk_order(map.primaries().len(), &migrations).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "Redis Cluster: slots are migrating both ways between two primaries; a walk \
                 over every key would miss some",
            )
        })?;
        // Popped from the end: reversed.
        let primaries = order
            .into_iter()
            .rev()
            .map(|p| Some(map.primaries()[p]))
            .collect();
        Ok(KeyScan {
            primaries,
            cursor: 0,
            layout: Some(layout),
        })
    }

    /// A fresh slot map, the layout, and the migrations each primary reports (`CLUSTER NODES`,
    /// its own line's `[slot->-target]` markers) as indexes into the map's primaries.
    async fn layout(&self) -> Result<(Arc<SlotMap>, Layout, Vec<(usize, usize)>)> {
        let Some(shards) = &self.shards else {
            return Err(Error::new(ErrorKind::Backend, "a layout of a single node"));
        };
        let map = self.fetch_slot_map(shards).await?;
        let mut migrations = Vec::new();
        let mut epochs = Vec::new();
        for (from, &slot) in map.primaries().iter().enumerate() {
            let nodes = self
                .on_primary(slot, redis::cmd("CLUSTER").arg("NODES").clone())
                .await?;
            let nodes = String::from_redis_value(nodes).map_err(|e| {
                Error::new(ErrorKind::Backend, format!("CLUSTER NODES answered: {e}"))
            })?;
            let own = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
            // `<id> <address> <flags> <primary> <ping> <pong> <config-epoch> ...`
            epochs.push(own.split(' ').nth(6).unwrap_or("").to_owned());
            for target in own.split('[').skip(1).filter_map(|m| {
                let (_, target) = m.split_once("->-")?;
                Some(target.trim_end_matches(']').trim())
            }) {
                // A target the map does not name as a primary cannot hold keys yet: nothing
                // to order.
                if let Some(to) = map.primary_with_id(target) {
                    migrations.push((from, to));
                }
            }
        }
        migrations.sort_unstable();
        migrations.dedup();
        let mut by_address: Vec<_> = migrations
            .iter()
            .map(|&(from, to)| (map.address(from), map.address(to)))
            .collect();
        by_address.sort_unstable();
        let layout = Layout {
            ranges: map.ranges(),
            epochs,
            migrations: by_address,
        };
        Ok((map, layout, migrations))
    }

    /// Sends `cmd` to the primary serving `slot`.
    async fn on_primary(&self, slot: u16, cmd: redis::Cmd) -> Result<Value> {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
            shards::primary_route(slot),
        ));
        self.round_trip(async |conn| match conn {
            Conn::Cluster(cluster) => cluster.route_command(cmd.clone(), route).await,
            Conn::Node(_) => cmd.query_async(conn).await,
        })
        .await
    }

    /// One `SCAN` page of the keys matching this prefix's pattern, as bytes (a key name need
    /// not be UTF-8), on the primary serving slot `primary` (on a cluster): the next cursor (0
    /// at the end) and the keys.
    async fn scan_page(&self, primary: Option<u16>, cursor: u64) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(self.keys.pattern())
            .arg("COUNT")
            .arg(self.scan_batch);
        let Some(slot) = primary else {
            return self.request(&scan).await;
        };
        let reply = self.on_primary(slot, scan).await?;
        FromRedisValue::from_redis_value(reply).map_err(|e| {
            Error::new(ErrorKind::Backend, format!("SCAN answered: {e}")).with_source(e)
        })
    }
}

impl KeyScan {
    /// The next page of keys; `None` once every primary is walked. `SCAN` may return a key
    /// twice.
    ///
    /// # Errors
    /// Connection errors and timeouts (pages returned before stay returned).
    pub(crate) async fn next_page(&mut self, cache: &RedisCache) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(&primary) = self.primaries.last() else {
            return Ok(None);
        };
        let (next, keys) = cache.scan_page(primary, self.cursor).await?;
        self.cursor = next;
        if next == 0 {
            self.primaries.pop();
        }
        Ok(Some(keys))
    }

    /// After the last page: true when the cluster's layout is as it was when the walk started,
    /// so no key can have moved behind it (always, on one node).
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub(crate) async fn held(&self, cache: &RedisCache) -> Result<bool> {
        match &self.layout {
            None => Ok(true),
            Some(before) => Ok(cache.layout().await?.1 == *before),
        }
    }
}

/// An order of `n` primaries in which each migrating primary comes before the one importing
/// from it; `None` when the migrations form a cycle.
fn walk_order(n: usize, migrations: &[(usize, usize)]) -> Option<Vec<usize>> {
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while order.len() < n {
        // A primary no unplaced primary migrates into.
        let next = (0..n).find(|&p| {
            !placed[p]
                && !migrations
                    .iter()
                    .any(|&(from, to)| to == p && !placed[from])
        })?;
        placed[next] = true;
        order.push(next);
    }
    Some(order)
}

/// The error when every walk saw the layout change under it.
pub(crate) fn kept_moving() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "Redis Cluster: slots moved during each of {WALKS} walks over every key; \
             try again when the resharding is over"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::walk_order;

    #[test]
    fn a_migrating_primary_is_walked_before_the_importing_one() {
        assert_eq!(walk_order(3, &[]), Some(vec![0, 1, 2]));
        let order = walk_order(3, &[(2, 0)]).unwrap();
        let at = |p| order.iter().position(|&q| q == p).unwrap();
        assert!(at(2) < at(0));
        let order = walk_order(4, &[(3, 1), (1, 0)]).unwrap();
        let at = |p| order.iter().position(|&q| q == p).unwrap();
        assert!(at(3) < at(1) && at(1) < at(0));
        assert_eq!(walk_order(2, &[(0, 1), (1, 0)]), None);
    }
}
