//! The one publisher of a process: at a fixed cadence it takes the deltas
//! partitions have handed over, folds them into the [`LiveView`], and hands
//! every [`TickSink`] the new snapshot and the alerts now due; after the
//! last partition has closed it publishes once more and returns the view,
//! from which the run's report is made.
//!
//! Alerts are released in one of two orders ([`AlertOrder`]). For a file,
//! every record has a position comparable across partitions (its place in
//! the input), so an alert waits until every partition has counted past
//! it, and alerts come out in input order whatever the number of threads.
//! For Kafka, partitions' offsets do not compare, and alerts come out as
//! they arrive.

use crate::handoff::{Board, Inbox, Message, Registration};
use crate::lifecycle::{Lifecycle, TaskError};
use crossbeam_channel::{select, tick, unbounded, Receiver, Sender};
use gmv_core::latency::StartRuns;
use gmv_core::output::{AlertRecord, Snapshot};
use gmv_core::partition::{Crossing, MerchantFigures};
use gmv_core::sink::LiveSink;
use gmv_core::view::{LiveState, LiveView, PartitionKey};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How alerts are ordered (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOrder {
    /// By position in the input, once every partition has passed it.
    Input,
    /// As partitions report them.
    Arrival,
}

/// One publish tick, as sinks see it.
pub struct Tick<'a> {
    /// The snapshot's sequence number.
    pub seq: u64,
    /// The snapshot.
    pub snapshot: &'a Arc<Snapshot>,
    /// Alerts released at this tick, in order.
    pub alerts: &'a [AlertRecord],
    /// The view the snapshot was made from.
    pub view: &'a LiveView,
    /// The merchants that changed since the last tick, by partition (only
    /// collected when a sink [wants them](TickSink::wants_merchants)).
    pub merchants: &'a [(PartitionKey, Vec<MerchantFigures>)],
    /// Time since the run started.
    pub elapsed: Duration,
    /// Whether this is the run's last tick.
    pub last: bool,
}

/// Receives each tick (the HTTP feed, an alert file, Kafka's snapshots
/// topic, a progress line).
pub trait TickSink: Send {
    /// One tick.
    fn tick(&mut self, tick: &Tick<'_>);
    /// Whether the sink reads [`Tick::merchants`] (collecting them costs a
    /// little per changed merchant, so only when asked).
    fn wants_merchants(&self) -> bool {
        false
    }
}

/// Any [`LiveSink`] as a tick sink: the alerts, then the snapshot (so a
/// snapshot never shows a crossing not yet announced).
pub struct LiveSinks(pub Vec<Arc<dyn LiveSink>>);

impl TickSink for LiveSinks {
    fn tick(&mut self, tick: &Tick<'_>) {
        for alert in tick.alerts {
            self.0.iter().for_each(|sink| sink.alert(alert));
        }
        self.0.iter().for_each(|sink| sink.snapshot(tick.snapshot));
    }
}

/// How the publisher runs.
pub struct PublisherOptions {
    /// Snapshot cadence.
    pub interval: Duration,
    /// How alerts are ordered.
    pub alert_order: AlertOrder,
    /// Who receives each tick.
    pub sinks: Vec<Box<dyn TickSink>>,
    /// What HTTP readers see; its latency histogram gets record start →
    /// snapshot published.
    pub state: Arc<LiveState>,
}

/// The run's handle on its publisher.
pub struct Publisher {
    board: Board,
    finish: Sender<()>,
    thread: std::thread::JoinHandle<LiveView>,
}

impl Publisher {
    /// Starts the publisher thread over `view` (whose merchant index
    /// `options.state` reads).
    pub fn start(
        lifecycle: &Lifecycle,
        view: LiveView,
        options: PublisherOptions,
    ) -> Result<Self, TaskError> {
        let (board, registrations, doorbell) = Board::new(offer_cadence(options.interval));
        let (finish, finishing) = unbounded();
        let merchants = options
            .sinks
            .iter()
            .any(|s| s.wants_merchants())
            .then(Vec::new);
        let run = Run {
            view,
            options,
            inboxes: Vec::new(),
            pending: Vec::new(),
            starts: Vec::new(),
            merchants,
            seq: 0,
            started: Instant::now(),
            guard: lifecycle.guard(),
        };
        let thread = std::thread::Builder::new()
            .name("gmv-publisher".into())
            .spawn(move || run.until_finished(registrations, doorbell, finishing))?;
        Ok(Self {
            board,
            finish,
            thread,
        })
    }

    /// Where partitions register.
    pub fn board(&self) -> Board {
        self.board.clone()
    }

    /// Publishes once more after every partition has closed, and returns
    /// the final view. Call once the sources have ended.
    pub fn finish(self) -> Result<LiveView, TaskError> {
        let _ = self.finish.send(());
        drop(self.board);
        self.thread
            .join()
            .map_err(|_| TaskError::from("the publisher thread panicked"))
    }
}

/// How often owners offer deltas, and the publisher takes them: four times
/// per tick, so a tick finds every partition at most a quarter interval
/// behind.
fn offer_cadence(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(5))
}

struct Run {
    view: LiveView,
    options: PublisherOptions,
    inboxes: Vec<Inbox>,
    /// Crossings not yet released ([`AlertOrder::Input`]).
    pending: Vec<Crossing>,
    /// When the records of the deltas taken since the last tick started.
    starts: Vec<StartRuns>,
    /// Merchants changed since the last tick, if a sink wants them.
    merchants: Option<Vec<(PartitionKey, Vec<MerchantFigures>)>>,
    seq: u64,
    started: Instant,
    guard: crate::lifecycle::TaskGuard,
}

impl Run {
    fn until_finished(
        mut self,
        registrations: Receiver<Registration>,
        doorbell: Receiver<()>,
        finishing: Receiver<()>,
    ) -> LiveView {
        let ticker = tick(self.options.interval);
        // Taking deltas as often as owners offer them keeps every slot free,
        // so a partition's next offer is never held back until the tick after
        // this one (which added a whole interval to the latency).
        let taker = tick(offer_cadence(self.options.interval));
        loop {
            let finishing_now = select! {
                recv(ticker) -> _ => false,
                recv(finishing) -> _ => true,
                recv(taker) -> _ => {
                    self.register(&registrations);
                    self.drain();
                    continue;
                }
                recv(doorbell) -> _ => {
                    // A partition is closing: take its messages now, publish
                    // at the tick as always.
                    self.register(&registrations);
                    self.drain();
                    continue;
                }
            };
            self.register(&registrations);
            if finishing_now {
                // Every partition registered before the sources ended.
                self.drain_until_closed();
                self.publish(true);
                drop(self.guard);
                return self.view;
            }
            self.drain();
            self.publish(false);
        }
    }

    /// Takes the partitions registered since the last look.
    fn register(&mut self, registrations: &Receiver<Registration>) {
        while let Ok(registration) = registrations.try_recv() {
            self.inboxes.push(Inbox::new(registration));
        }
    }

    /// Takes every message waiting now.
    fn drain(&mut self) {
        let mut index = 0;
        while index < self.inboxes.len() {
            while let Some(message) = self.inboxes[index].next() {
                self.take(index, message);
            }
            if self.inboxes[index].closed {
                self.inboxes.swap_remove(index);
            } else {
                index += 1;
            }
        }
    }

    /// Takes messages until every partition has closed (owners hand their
    /// last delta and close once their source ends).
    fn drain_until_closed(&mut self) {
        while !self.inboxes.is_empty() {
            self.drain();
            if !self.inboxes.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn take(&mut self, index: usize, message: Message) {
        let inbox = &mut self.inboxes[index];
        match message {
            Message::Update(mut handed) => {
                let applied = self.view.apply_from(
                    &inbox.key,
                    &inbox.member,
                    inbox.generation,
                    &handed.delta,
                );
                if applied.stale {
                    return;
                }
                self.view.advance(&inbox.key, handed.progress);
                if !applied.moved_merchants.is_empty() {
                    tracing::warn!(
                        merchants = ?&applied.moved_merchants[..applied.moved_merchants.len().min(5)],
                        partition = inbox.key.partition,
                        "merchants seen in more than one partition: producers must key events by merchant_id; their figures follow the latest partition"
                    );
                }
                self.pending.extend(applied.crossings);
                self.starts.push(handed.starts);
                if let Some(merchants) = &mut self.merchants {
                    merchants.push((
                        inbox.key.clone(),
                        std::mem::take(&mut handed.delta.merchants),
                    ));
                }
            }
            Message::Closed { last, keep } => {
                if let Some(last) = last {
                    self.take(index, Message::Update(last));
                }
                let inbox = &mut self.inboxes[index];
                inbox.closed = true;
                if !keep {
                    let (key, generation) = (inbox.key.clone(), inbox.generation);
                    self.view.remove_from(&key, generation);
                    // An earlier hand-over of the partition may still be
                    // open (a group that gave it to two members at once):
                    // its deltas were set aside, so it sends all again.
                    let earlier = self
                        .inboxes
                        .iter()
                        .filter(|i| i.key == key && !i.closed && i.generation < generation)
                        .max_by_key(|i| i.generation);
                    if let Some(earlier) = earlier {
                        earlier
                            .resend
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        }
    }

    fn publish(&mut self, last: bool) {
        self.seq += 1;
        let alerts = self.release(last);
        let interval_ms = u64::try_from(self.options.interval.as_millis()).unwrap_or(u64::MAX);
        let snapshot = Arc::new(self.view.snapshot(
            self.seq,
            interval_ms,
            self.options.state.latency().percentiles(),
        ));
        let merchants = self
            .merchants
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let tick = Tick {
            seq: self.seq,
            snapshot: &snapshot,
            alerts: &alerts,
            view: &self.view,
            merchants: &merchants,
            elapsed: self.started.elapsed(),
            last,
        };
        for sink in &mut self.options.sinks {
            sink.tick(&tick);
        }
        self.options.state.publish(snapshot, self.view.memory());
        self.options.state.publish_day(self.view.day_series());
        let now = chrono::Utc::now().timestamp_millis();
        for runs in self.starts.drain(..) {
            self.options.state.latency().record_runs_since(&runs.0, now);
        }
    }

    /// The alerts due now, in order.
    fn release(&mut self, last: bool) -> Vec<AlertRecord> {
        let due: Vec<Crossing> = match self.options.alert_order {
            AlertOrder::Arrival => std::mem::take(&mut self.pending),
            AlertOrder::Input => {
                // Partitions still open bound what is due; closed ones have
                // counted everything. One that has not reported yet holds
                // everything back.
                let barrier = if last {
                    i64::MAX
                } else {
                    self.inboxes
                        .iter()
                        .map(|inbox| self.view.progress(&inbox.key).unwrap_or(-1))
                        .min()
                        .unwrap_or(i64::MAX)
                };
                let (due, wait): (Vec<Crossing>, Vec<Crossing>) = std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|c| c.position < barrier);
                self.pending = wait;
                let mut due = due;
                due.sort_by_key(|c| c.position);
                due
            }
        };
        due.iter().map(|c| self.view.alert_record(c)).collect()
    }
}
