//! Replays the checked-in corpora of the fuzz targets (`fuzz/`) on stable, as ordinary tests:
//! every input runs through the same checks as under libFuzzer.

#[path = "support/codec.rs"]
#[cfg(feature = "redis")]
mod codec;
#[path = "support/l1_ops.rs"]
mod l1_ops;

use std::path::{Path, PathBuf};

/// The inputs of `target`'s corpus, sorted; at least `min` of them.
fn corpus(target: &str, min: usize) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "only {} inputs in {}: the corpus is missing",
        files.len(),
        dir.display()
    );
    files
}

/// Runs every input of `target`'s corpus through `check`; names the ones that panicked.
fn replay(target: &str, min: usize, check: fn(&[u8])) {
    let files = corpus(target, min);
    let mut broken = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The check's panic (printed above) names what failed.
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            broken.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {} {target} inputs failed: {broken:?}",
        broken.len(),
        files.len()
    );
}

#[test]
fn every_l1_ops_corpus_input_keeps_the_model_invariants() {
    replay("l1_ops", 10, l1_ops::run);
}

#[cfg(feature = "redis")]
#[test]
fn every_codec_corpus_input_decodes_safely() {
    replay("codec", 10, codec::run);
}
