//! The change feed of a [`PostgresSource`](super::PostgresSource): a connection of its own that
//! `LISTEN`s on the table's channel and turns each notification into a [`Change`].
//!
//! The connection (its application name the source's with `-feed` appended) runs on a task that forwards notifications to the feed's channel. The feed
//! ends, so that the cache follows it again and resyncs, when the connection closes, when a
//! heartbeat query (`SELECT 1`, every `heartbeat`) is not answered within `heartbeat` (a link
//! gone silent carries no notification and no error), or when the feed's channel is full
//! (a change would otherwise be lost).

use super::conn::classify;
use crate::error::{Error, ErrorKind, Result};
use crate::flag::FlagId;
use crate::tiered::{Change, ChangeFeed};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// Connects, runs `listen` (the `LISTEN` statement), and returns the feed; bounded by
/// `timeout`.
pub(crate) async fn listen(
    config: &Config,
    listen: &str,
    capacity: usize,
    heartbeat: Duration,
    timeout: Duration,
) -> Result<ChangeFeed> {
    // Named apart from the loading connection, for `pg_stat_activity`.
    let mut config = config.clone();
    let name = format!(
        "{}-feed",
        config.get_application_name().unwrap_or("flagcache")
    );
    config.application_name(name);
    let listening = async {
        let (client, mut connection) = config.connect(NoTls).await.map_err(classify)?;
        let (changes, feed) = mpsc::channel(capacity);
        let (silent, stop) = oneshot::channel();
        let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(forward(messages, changes, stop));
        client.batch_execute(listen).await.map_err(classify)?;
        tokio::spawn(beat(client, heartbeat, silent));
        Ok(ChangeFeed::from_channel(feed))
    };
    tokio::time::timeout(timeout, listening)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("listening on PostgreSQL took over {timeout:?}"),
            )
        })?
}

/// Forwards notifications until the connection closes, the feed is dropped or full, or `stop`
/// fires (or its sender is dropped: the heartbeat ended).
async fn forward(
    mut messages: impl futures_util::Stream<
        Item = std::result::Result<AsyncMessage, tokio_postgres::Error>,
    > + Unpin,
    changes: mpsc::Sender<Change>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            () = changes.closed() => return,
            _ = &mut stop => {
                tracing::warn!("the PostgreSQL change feed's connection went silent; ending the feed");
                return;
            }
        };
        match message {
            Some(Ok(AsyncMessage::Notification(n))) => {
                // An empty payload (a TRUNCATE) means anything may have changed.
                let change = match n.payload() {
                    "" => Change::All,
                    id => match FlagId::parse(id) {
                        Ok(id) => Change::Flags(vec![id]),
                        // Not a flag id: not the trigger's (anyone may NOTIFY on a channel).
                        Err(_) => continue,
                    },
                };
                if changes.try_send(change).is_err() {
                    tracing::warn!("the PostgreSQL change feed fell behind; ending the feed");
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the PostgreSQL change feed's connection failed");
                return;
            }
            None => return,
        }
    }
}

/// Asks `SELECT 1` every `every`; an answer that does not come within `every` (or an error)
/// fires `silent`. Ends when the connection does.
async fn beat(client: tokio_postgres::Client, every: Duration, silent: oneshot::Sender<()>) {
    loop {
        tokio::time::sleep(every).await;
        if client.is_closed() || silent.is_closed() {
            return;
        }
        let answered = tokio::time::timeout(every, client.simple_query("SELECT 1")).await;
        if !matches!(answered, Ok(Ok(_))) {
            let _ = silent.send(());
            return;
        }
    }
}
