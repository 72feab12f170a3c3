//! `debug` spans on L2 and source calls and on backplane notices (with their ids, outcome and
//! duration), and none on the hit path.

#![allow(clippy::disallowed_types)] // test code: std's locks are the right ones

#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{FlagCache, FlagId, MemoryStore, TieredCache};
use sources::{Db, def};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer that keeps what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn l2_source_and_notice_calls_are_spans_and_hits_are_not() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    tracing::debug!("capture check");
    let db = Db::new("spans");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let instance = || {
        TieredCache::builder()
            .l2(l2.clone())
            .source(db.source.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());

    // A miss: an L2 read and a source load of one id, each a span with its outcome.
    assert!(b.get(&FlagId::new("f")).await.is_some());
    let spans = captured.take();
    let l2_read = spans
        .lines()
        .find(|l| l.contains("flagcache.call") && l.contains("L2 read"))
        .unwrap_or_else(|| panic!("no L2 read span in:\n{spans}"));
    assert!(
        l2_read.contains("ids=1") && l2_read.contains("outcome=\"ok\""),
        "{l2_read}"
    );
    assert!(l2_read.contains("micros="), "{l2_read}");
    assert!(
        spans.lines().any(|l| l.contains("flagcache.call")
            && l.contains("the flag source")
            && l.contains("ids=1")),
        "{spans}"
    );

    // Hits: nothing.
    for _ in 0..100 {
        assert!(b.get_with("f", |d| d.enabled).is_some());
        assert!(b.get(&FlagId::new("f")).await.is_some());
    }
    assert_eq!(captured.take(), "", "no span or event on the hit path");

    // A notice from another instance: a span with its ids and outcome.
    let _task = b.start_backplane().unwrap();
    wait::wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    db.source.upsert(&def("f", 2)).unwrap();
    a.try_set(&FlagId::new("f"), def("f", 2), None)
        .await
        .unwrap();
    wait::wait_for("B to apply the notice", || {
        b.tiered_stats().notices_received == 1
    })
    .await;
    tokio::task::yield_now().await;
    let spans = captured.take();
    let notice = spans
        .lines()
        .find(|l| l.contains("flagcache.notice"))
        .unwrap_or_else(|| panic!("no notice span in:\n{spans}"));
    assert!(
        notice.contains("ids=1") && notice.contains("outcome=\"applied\""),
        "{notice}"
    );

    // A call its caller gave up on (L2 hangs, the read is dropped): its span says so.
    l2.set_hanging(true);
    let c = instance();
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        c.get(&FlagId::new("hangs")),
    )
    .await;
    tokio::task::yield_now().await;
    let spans = captured.take();
    let cancelled = spans
        .lines()
        .find(|l| l.contains("flagcache.call") && l.contains("L2 read"))
        .unwrap_or_else(|| panic!("no L2 read span in:\n{spans}"));
    assert!(cancelled.contains("outcome=\"cancelled\""), "{cancelled}");
    l2.set_hanging(false);
}
