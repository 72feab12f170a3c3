//! The leases of a `MemoryStore`: a holder and an expiry per name, at most [`MAX_LEASES`]
//! names.

use crate::error::{Error, ErrorKind, Result};
use crate::time::Ticks;
use std::collections::HashMap;

/// The most lease names a store keeps; the crate uses two.
pub(super) const MAX_LEASES: usize = 64;

#[derive(Default)]
pub(super) struct Leases {
    held: HashMap<String, (String, Ticks)>,
}

impl Leases {
    /// Takes `name` for `holder` until `until` if it is free (never taken, or expired by
    /// `now`), or renews it if `holder` holds it; true when `holder` holds it after the call.
    pub(super) fn take(
        &mut self,
        name: &str,
        holder: &str,
        now: Ticks,
        until: Ticks,
    ) -> Result<bool> {
        if let Some((current, expires)) = self.held.get_mut(name) {
            if *expires > now && current != holder {
                return Ok(false);
            }
            holder.clone_into(current);
            *expires = until;
            return Ok(true);
        }
        if self.held.len() >= MAX_LEASES {
            self.held.retain(|_, (_, expires)| *expires > now);
            if self.held.len() >= MAX_LEASES {
                return Err(Error::new(
                    ErrorKind::CapacityExceeded,
                    format!("a MemoryStore keeps at most {MAX_LEASES} leases"),
                ));
            }
        }
        self.held
            .insert(name.to_owned(), (holder.to_owned(), until));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_by_one_holder_until_it_expires() {
        let mut leases = Leases::default();
        assert!(leases.take("feed", "a", 0, 10).unwrap());
        assert!(!leases.take("feed", "b", 5, 15).unwrap(), "a holds it");
        assert!(leases.take("feed", "a", 5, 15).unwrap(), "renewed");
        assert!(!leases.take("feed", "b", 14, 24).unwrap());
        assert!(
            leases.take("feed", "b", 15, 25).unwrap(),
            "expired: b takes it"
        );
        assert!(!leases.take("feed", "a", 16, 26).unwrap());
    }

    #[test]
    fn names_are_bounded() {
        let mut leases = Leases::default();
        for i in 0..MAX_LEASES {
            assert!(leases.take(&i.to_string(), "a", 0, 10).unwrap());
        }
        let full = leases.take("one more", "a", 5, 10).unwrap_err();
        assert_eq!(full.kind(), ErrorKind::CapacityExceeded);
        assert!(
            leases.take("one more", "a", 10, 20).unwrap(),
            "expired names make room"
        );
    }
}
