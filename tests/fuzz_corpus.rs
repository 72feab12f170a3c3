//! Replays the checked-in corpus of the `l1_ops` fuzz target (`fuzz/`) on stable, as an
//! ordinary test: every input runs through the same interpreter and model as under libFuzzer.

#[path = "support/l1_ops.rs"]
mod l1_ops;

use std::path::Path;

#[test]
fn every_l1_ops_corpus_input_keeps_the_model_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/l1_ops");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "only {} inputs in {}: the corpus is missing",
        files.len(),
        dir.display()
    );
    let mut broken = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The interpreter's panic (printed above) names the operation and the invariant.
        if std::panic::catch_unwind(|| l1_ops::run(&data)).is_err() {
            broken.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {} corpus inputs broke an invariant: {broken:?}",
        broken.len(),
        files.len()
    );
}
