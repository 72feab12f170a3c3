//! [`FlagId`]: the name of a flag and the cache key.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use arcstr::ArcStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
/// [`FlagDefinition::validate`](super::FlagDefinition::validate), which
/// [`FlagDefinition::from_json`](super::FlagDefinition::from_json) runs).
///
/// One word: the length sits beside the bytes in the shared allocation (an `Arc<str>` would
/// carry it in a second word). A cache holds every key twice, in its map and its eviction
/// ring, and each definition holds its own: a million flags save 24 MB.
#[derive(Clone)]
pub struct FlagId(ArcStr);

impl FlagId {
    /// Wraps any string, without validation.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(ArcStr::from(id.as_ref()))
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

/// The bytes a flag id may hold: ASCII letters, digits, `.`, `_` and `-`.
const ALLOWED: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        allowed[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
        b += 1;
    }
    allowed
};

/// Checks the flag id rules; the message names the problem.
pub(super) fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("flag id is empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "flag id is {} bytes long; at most {MAX_ID_LEN} allowed",
            id.len()
        ));
    }
    // Every write and every decoded L2 value checks its id: a table lookup a byte, and the
    // characters decoded only to name the one that is not allowed.
    if id.bytes().all(|b| ALLOWED[usize::from(b)]) {
        return Ok(());
    }
    match id
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii() && ALLOWED[c as usize]))
    {
        Some((at, c)) => Err(format!(
            "flag id `{}` contains {c:?} at byte {at}; allowed: ASCII letters, digits, '.', '_', '-'",
            id.escape_debug()
        )),
        None => Ok(()),
    }
}

impl PartialEq for FlagId {
    fn eq(&self, other: &Self) -> bool {
        ArcStr::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
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
        Self(ArcStr::from(id))
    }
}

/// A plain string.
impl Serialize for FlagId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// From a plain string, without validation (see the type's docs).
impl<'de> Deserialize<'de> for FlagId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(IdVisitor)
    }
}

/// Copies the string straight into the shared allocation (no `String` on the way when the
/// format lends one).
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = FlagId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flag id string")
    }

    fn visit_str<E: serde::de::Error>(self, id: &str) -> std::result::Result<FlagId, E> {
        Ok(FlagId::new(id))
    }

    /// Formats that hand strings over as bytes (as a `String` accepts them).
    fn visit_bytes<E: serde::de::Error>(self, id: &[u8]) -> std::result::Result<FlagId, E> {
        match std::str::from_utf8(id) {
            Ok(id) => Ok(FlagId::new(id)),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(id), &self)),
        }
    }
}
