//! The CopyBoth stream: a background task owns the socket, answers keepalives and
//! sends status updates on time while the caller reads events at its own pace.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::messages::{parse_copy_data, pg_now, status_update, ReplicationEvent};
use super::{Lsn, StartOptions};
use crate::conn::{server_error, Backend, Connection};
use crate::error::Error;

/// Messages read since the last pause before read coalescing looks at the socket.
const COALESCE_AFTER_MESSAGES: usize = 16;
/// With at least this much waiting, the server is backlogged and reading goes on at once.
const BACKLOG_BYTES: usize = 8 * 1024;
/// The shortest status interval accepted (tokio intervals cannot be zero).
const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(10);
/// How long a clean shutdown waits for the server to finish the COPY.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The write, flush and apply positions reported to the server; shared with the task.
/// Each only moves forward.
#[derive(Debug, Clone, Default)]
pub struct StandbyPositions(Arc<[AtomicU64; 3]>);

impl StandbyPositions {
    /// Advances the position of WAL received and written.
    pub fn set_write(&self, lsn: Lsn) {
        self.0[0].fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Advances the position of WAL durably flushed (this confirms the slot).
    pub fn set_flush(&self, lsn: Lsn) {
        self.0[1].fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Advances the position of WAL applied.
    pub fn set_apply(&self, lsn: Lsn) {
        self.0[2].fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// (write, flush, apply).
    pub fn get(&self) -> (Lsn, Lsn, Lsn) {
        let load = |i: usize| Lsn(self.0[i].load(Ordering::Relaxed));
        (load(0), load(1), load(2))
    }
}

enum Control {
    StatusNow,
    Shutdown(oneshot::Sender<Result<(), Error>>),
}

/// A running logical replication stream.
#[derive(Debug)]
pub struct ReplicationStream {
    events: mpsc::Receiver<Result<ReplicationEvent, Error>>,
    control: mpsc::Sender<Control>,
    positions: StandbyPositions,
    proto_version: u32,
}

impl ReplicationStream {
    pub(super) fn spawn(
        conn: Connection,
        options: &StartOptions,
        proto_version: u32,
    ) -> ReplicationStream {
        let (event_tx, events) = mpsc::channel(options.channel_capacity.max(1));
        let (control, control_rx) = mpsc::channel(8);
        let positions = StandbyPositions::default();
        let period = options.status_interval.max(MIN_STATUS_INTERVAL);
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let worker = Worker {
            io: Reader {
                conn,
                since_pause: 0,
                coalesce: options.read_coalesce,
                peek: Vec::new(),
            },
            events: event_tx,
            control: control_rx,
            positions: positions.clone(),
            ticker,
        };
        tokio::spawn(worker.run());
        ReplicationStream {
            events,
            control,
            positions,
            proto_version,
        }
    }

    /// The next event; `None` once the stream has ended. Errors end the stream.
    pub async fn next(&mut self) -> Result<Option<ReplicationEvent>, Error> {
        self.events.recv().await.transpose()
    }

    /// The shared positions; set them as data is written, flushed and applied.
    pub fn positions(&self) -> StandbyPositions {
        self.positions.clone()
    }

    /// Sends a status update with the current positions now rather than at the next interval.
    pub fn send_status_now(&self) {
        // A full queue already holds a request that will report the latest positions.
        let _ = self.control.try_send(Control::StatusNow);
    }

    /// The pgoutput protocol version in use.
    pub fn proto_version(&self) -> u32 {
        self.proto_version
    }

    /// Reports the positions a last time, ends the COPY (CopyDone), reads to ReadyForQuery
    /// and sends Terminate. Dropping the stream does the same in the background.
    pub async fn shutdown(self) -> Result<(), Error> {
        let (reply, done) = oneshot::channel();
        if self.control.send(Control::Shutdown(reply)).await.is_err() {
            return Ok(()); // the task has already ended the session
        }
        done.await.unwrap_or(Ok(()))
    }
}

enum Exit {
    /// The caller asked; report the outcome here.
    Shutdown(oneshot::Sender<Result<(), Error>>),
    /// The caller dropped the stream, or the server ended the COPY.
    Quietly,
}

struct Reader {
    conn: Connection,
    since_pause: usize,
    coalesce: Duration,
    /// Scratch space for peeking at the socket (allocated on first use).
    peek: Vec<MaybeUninit<u8>>,
}

struct Worker {
    io: Reader,
    events: mpsc::Sender<Result<ReplicationEvent, Error>>,
    control: mpsc::Receiver<Control>,
    positions: StandbyPositions,
    ticker: Interval,
}

impl Worker {
    async fn run(mut self) {
        match self.pump().await {
            Ok(Exit::Shutdown(reply)) => {
                let _ = reply.send(self.finish().await);
            }
            Ok(Exit::Quietly) => {
                if let Err(error) = self.finish().await {
                    tracing::debug!(%error, "ending the replication session");
                }
            }
            Err(error) => {
                let _ = self.events.send(Err(error)).await;
            }
        }
    }

    async fn pump(&mut self) -> Result<Exit, Error> {
        loop {
            let read = tokio::select! {
                control = self.control.recv() => {
                    match self.on_control(control).await? {
                        Some(exit) => return Ok(exit),
                        None => continue,
                    }
                }
                _ = self.ticker.tick() => {
                    self.send_status().await?;
                    continue;
                }
                read = self.io.read_event() => read?,
            };
            let Some(event) = read else {
                return Ok(Exit::Quietly); // the server ended the COPY
            };
            if matches!(&event, ReplicationEvent::Keepalive(k) if k.reply_requested) {
                self.send_status().await?;
            }
            if let Some(exit) = self.deliver(event).await? {
                return Ok(exit);
            }
        }
    }

    /// Waits for room in the channel, meanwhile sending status updates when due.
    async fn deliver(&mut self, event: ReplicationEvent) -> Result<Option<Exit>, Error> {
        match self.events.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(event));
                return Ok(None);
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Ok(Some(Exit::Quietly)),
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
        let events = self.events.clone();
        let mut event = Some(event);
        loop {
            tokio::select! {
                permit = events.reserve() => {
                    let Ok(permit) = permit else { return Ok(Some(Exit::Quietly)) };
                    if let Some(event) = event.take() {
                        permit.send(Ok(event));
                    }
                    return Ok(None);
                }
                _ = self.ticker.tick() => self.send_status().await?,
                control = self.control.recv() => {
                    if let Some(exit) = self.on_control(control).await? {
                        return Ok(Some(exit));
                    }
                }
            }
        }
    }

    async fn on_control(&mut self, control: Option<Control>) -> Result<Option<Exit>, Error> {
        match control {
            Some(Control::StatusNow) => self.send_status().await.map(|()| None),
            Some(Control::Shutdown(reply)) => Ok(Some(Exit::Shutdown(reply))),
            None => Ok(Some(Exit::Quietly)),
        }
    }

    async fn send_status(&mut self) -> Result<(), Error> {
        let (write, flush, apply) = self.positions.get();
        let payload = status_update(write, flush, apply, pg_now(), false);
        frontend::CopyData::new(&payload[..])?.write(self.io.conn.write_buf());
        self.io.conn.flush().await?;
        self.ticker.reset();
        tracing::trace!(%write, %flush, %apply, "sent standby status update");
        Ok(())
    }

    /// Final status update, CopyDone, drain to ReadyForQuery, Terminate.
    async fn finish(mut self) -> Result<(), Error> {
        self.send_status().await?;
        frontend::copy_done(self.io.conn.write_buf());
        self.io.conn.flush().await?;
        let conn = &mut self.io.conn;
        let drain = async {
            loop {
                match conn.recv().await? {
                    Backend::Message(Message::ReadyForQuery(_)) => return Ok(()),
                    Backend::Message(Message::ErrorResponse(body)) => {
                        return Err(Error::from(server_error(&body)?))
                    }
                    _ => {} // remaining XLogData, CopyDone, CommandComplete
                }
            }
        };
        tokio::time::timeout(SHUTDOWN_DRAIN, drain)
            .await
            .map_err(|_| {
                Error::Protocol("the server did not end the COPY within 10 s of CopyDone".into())
            })??;
        self.io.conn.close().await
    }
}

impl Reader {
    /// The next replication event; `None` when the server ends the COPY. Cancel-safe.
    async fn read_event(&mut self) -> Result<Option<ReplicationEvent>, Error> {
        loop {
            match self.conn.try_recv()? {
                Some(Backend::Message(Message::CopyData(body))) => {
                    self.since_pause += 1;
                    return parse_copy_data(body.into_bytes()).map(Some);
                }
                // The server ends the stream (CopyDone), or already ended it and says so.
                Some(Backend::Message(
                    Message::CopyDone | Message::CommandComplete(_) | Message::ReadyForQuery(_),
                )) => return Ok(None),
                Some(Backend::Message(Message::ErrorResponse(body))) => {
                    return Err(server_error(&body)?.into())
                }
                // Asynchronous messages may come at any time (e.g. a shutdown warning).
                Some(Backend::Message(
                    Message::NoticeResponse(_)
                    | Message::ParameterStatus(_)
                    | Message::NotificationResponse(_),
                )) => {}
                Some(_) => {
                    return Err(Error::Protocol(
                        "unexpected message in the replication stream".into(),
                    ))
                }
                None => {}
            }
            self.coalesce_pause().await;
            self.conn.fill().await?;
        }
    }

    /// Read batching: when the server is not backlogged, let data accumulate for a moment.
    async fn coalesce_pause(&mut self) {
        if self.coalesce.is_zero() || self.since_pause < COALESCE_AFTER_MESSAGES {
            return;
        }
        self.peek.resize(BACKLOG_BYTES, MaybeUninit::uninit());
        let waiting = self.conn.unparsed() + self.conn.stream().buffered_in_socket(&mut self.peek);
        if waiting < BACKLOG_BYTES {
            self.since_pause = 0;
            tokio::time::sleep(self.coalesce).await;
        }
    }
}
