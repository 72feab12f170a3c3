//! Stored values: a definition's JSON, the layout other services read too.
//!
//! Decoding is defensive: whatever bytes a key holds (another writer's garbage, a truncated
//! write, a definition of another flag, something huge) become a [`Corrupt`] error, which the
//! cache counts and treats as a miss. Nothing here can panic on input (fuzzed: `fuzz/`).
//!
//! [`Corrupt`]: crate::ErrorKind::Corrupt

use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};

/// What a `TieredCache` stores under a flag's key when it invalidates the flag: read as absent,
/// and it keeps read-through write-backs (`SET ... NX`) that started before the invalidate from
/// storing their older definition, until it expires. Explicit writes replace it.
pub(crate) const TOMBSTONE: &[u8] = br#"{"flagcache":"invalidated"}"#;

/// False for a stored value that holds nothing to read: empty, or a [`TOMBSTONE`]. Such a key
/// is a miss, not a corrupt value, in a single read as in a batch.
pub(crate) fn has_definition(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes != TOMBSTONE
}

/// The default limit on a stored value's size.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 256 * 1024;

/// Encodes `def` for storage, refusing one larger than `max_len` bytes (it would be a decode
/// error for every reader).
pub(crate) fn encode(def: &FlagDefinition, max_len: usize) -> Result<Vec<u8>> {
    let bytes = def.to_json();
    if bytes.len() > max_len {
        return Err(Error::invalid_flag(format!(
            "flag `{}` encodes to {} bytes; the Redis value limit is {max_len}",
            def.id,
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes the value stored under `id`'s key: at most `max_len` bytes of a valid definition's
/// JSON whose own id is `id`.
pub(crate) fn decode(id: &FlagId, bytes: &[u8], max_len: usize) -> Result<FlagDefinition> {
    if bytes.len() > max_len {
        return Err(corrupt(
            id,
            format!("the value is {} bytes; the limit is {max_len}", bytes.len()),
        ));
    }
    let def = FlagDefinition::from_json(bytes).map_err(|e| corrupt(id, e.to_string()))?;
    if def.id != *id {
        return Err(corrupt(
            id,
            format!("the value is the definition of flag `{}`", def.id),
        ));
    }
    Ok(def)
}

/// Whether a stored value the version guard refused to replace keeps its key: a valid
/// definition of `id` does, and so does a newer build's, which this build cannot decode only
/// because it names a variant added since (a rule operator, a value type: the one way the
/// format grows that an older reader refuses; unknown members are ignored), as long as its
/// `id` and `version` are readable. Replacing that with a lower version would take every
/// reader back. Anything else this build cannot decode, or decodes and finds invalid, is
/// replaced: kept, it would refuse every lower write while every read calls it corrupt. The
/// size limit plays no part: another instance may allow more.
pub(crate) fn holds_its_version(id: &FlagId, bytes: &[u8]) -> bool {
    /// What any build's definition has in common.
    #[derive(serde::Deserialize)]
    struct Head {
        id: FlagId,
        #[expect(dead_code, reason = "read only to check that it is a u64")]
        version: u64,
    }
    match serde_json::from_slice::<FlagDefinition>(bytes) {
        Ok(def) => def.id == *id && def.validate().is_ok(),
        Err(e) => {
            // serde's wording for a variant this build does not know.
            e.is_data()
                && e.to_string().starts_with("unknown variant")
                && serde_json::from_slice::<Head>(bytes).is_ok_and(|head| head.id == *id)
        }
    }
}

fn corrupt(id: &FlagId, why: String) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("stored value of flag `{id}`: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: &str) -> FlagDefinition {
        FlagDefinition::new_boolean(id, "A flag", true).unwrap()
    }

    #[test]
    fn a_definition_round_trips() {
        let d = def("a.flag");
        let bytes = encode(&d, DEFAULT_MAX_VALUE_BYTES).unwrap();
        assert_eq!(decode(&d.id, &bytes, DEFAULT_MAX_VALUE_BYTES).unwrap(), d);
    }

    #[test]
    fn bad_values_are_corrupt_errors() {
        let id = FlagId::new("a.flag");
        let good = def("a.flag").to_json();
        let other = def("b.flag").to_json();
        let cases: [(&str, &[u8]); 6] = [
            ("garbage", b"\xff\xfe\x00garbage"),
            ("empty", b""),
            ("wrong JSON", br#"{"id":"a.flag"}"#),
            ("a JSON string", br#""a.flag""#),
            ("another flag", &other),
            ("truncated", &good[..good.len() / 2]),
        ];
        for (what, bytes) in cases {
            let err = decode(&id, bytes, DEFAULT_MAX_VALUE_BYTES).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        }
        let err = decode(&id, &good, good.len() - 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn oversized_definitions_are_not_written() {
        let d = def("a.flag");
        let len = d.to_json().len();
        assert!(encode(&d, len).is_ok());
        assert_eq!(
            encode(&d, len - 1).unwrap_err().kind(),
            ErrorKind::InvalidFlag
        );
    }
}
