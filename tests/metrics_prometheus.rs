//! The metrics of a `TieredCache` served as Prometheus text by `metrics-exporter-prometheus`
//! and scraped over HTTP, as a Prometheus server would. (Its own binary: a recorder is global.)

#![cfg(feature = "metrics")]

use flagcache::{FlagId, TieredCache};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_caches_metrics_over_http() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], port))
        .install()
        .unwrap();
    let cache = TieredCache::builder().build().unwrap();
    cache
        .l1()
        .try_set(
            &FlagId::new("f"),
            flagcache::FlagDefinition::new_boolean("f", "F", true).unwrap(),
            None,
        )
        .unwrap();
    assert!(cache.get_with("f", |d| d.enabled).is_some());
    let _task = cache
        .start_metrics_task("checkout", Duration::from_millis(10))
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = tokio::task::spawn_blocking(move || scrape(port))
            .await
            .unwrap();
        // A scrape may come while the task is between two metrics of one sample: wait for the
        // last one this test checks.
        if text.contains("flagcache_size") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#"flagcache_hits_total{cache="checkout",layer="l1"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flagcache_size{cache="checkout",layer="l1"} 1"#),
        "{text}"
    );
}
