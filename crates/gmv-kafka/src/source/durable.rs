//! Checkpoints made durable off a member's thread.
//!
//! The member only *captures* what changed in a partition since its last
//! capture (a delta: the change lists and the dedup journal, cheap to take
//! whatever the state's size) and hands it here. This writer thread waits
//! until the outputs produced before the capture are delivered, then makes
//! the link durable (encode, fsync or produce) and reports back; the member
//! commits the offset only then. One capture per partition is in flight at
//! a time, so the queue holds at most one per owned partition.
//!
//! Full checkpoints (bases) never stop the member: the writer keeps a
//! shadow of each partition, the state its captures add up to, and writes a
//! base from it every `deltas_per_base` links, or whenever the chain on
//! the store is broken (a failed write). The price is a second copy of each
//! partition's state in memory.

use super::Shared;
use crate::KafkaError;
use crossbeam_channel::{Receiver, Sender};
use gmv_core::partition::Partition;
use gmv_core::state::{Checkpoint, CheckpointKind};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A partition of the input: (topic, partition).
type Key = (String, i32);

/// Where a restored partition's chain ends, and the chain itself (the
/// writer rebuilds its shadow from it).
pub(crate) struct Restored {
    /// Sequence number of the last link.
    pub(crate) seq: u64,
    /// Its checksum: the next delta's parent.
    pub(crate) tip: Option<u64>,
    /// Deltas since the chain's base.
    pub(crate) deltas: u32,
    /// The links, base first.
    pub(crate) chain: Vec<Checkpoint>,
}

/// The writer's answer for one capture.
pub(crate) struct Saved {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The offset the durable state covers up to.
    pub(crate) next: i64,
    /// Whether it is durable (if not, the next link will be a base that
    /// covers it).
    pub(crate) durable: bool,
}

enum Job {
    /// A partition this member now owns, with its restored chain if any.
    Adopt(Key, Option<Restored>),
    /// Make these deltas durable, in order.
    Save(Vec<(Key, Checkpoint)>),
    /// The partition has left this member: forget it.
    Forget(Key),
    /// Answer once everything before it is done.
    Barrier(Sender<()>),
}

/// A member's checkpoint writer.
pub(crate) struct Durable {
    jobs: Option<Sender<Job>>,
    saved: Receiver<Saved>,
    thread: Option<JoinHandle<()>>,
}

impl Durable {
    /// Starts the writer thread of member number `index`.
    pub(crate) fn start(shared: Arc<Shared>, index: usize) -> std::io::Result<Self> {
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let (saved_tx, saved) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("gmv-durable-{index}"))
            .spawn(move || Writer::new(shared, saved_tx).run(job_rx))?;
        Ok(Self {
            jobs: Some(jobs),
            saved,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The writer only stops once this sender is dropped.
            let _ = jobs.send(job);
        }
    }

    /// Tells the writer about a newly owned partition.
    pub(crate) fn adopt(&self, topic: &str, partition: i32, restored: Option<Restored>) {
        self.send(Job::Adopt((topic.to_owned(), partition), restored));
    }

    /// Hands captured deltas over.
    pub(crate) fn save(&self, captures: Vec<(Key, Checkpoint)>) {
        if !captures.is_empty() {
            self.send(Job::Save(captures));
        }
    }

    /// Forgets a partition that left this member.
    pub(crate) fn forget(&self, topic: &str, partition: i32) {
        self.send(Job::Forget((topic.to_owned(), partition)));
    }

    /// Waits until everything handed over so far is done.
    pub(crate) fn wait(&self) {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.send(Job::Barrier(done));
        let _ = wait.recv();
    }

    /// The answers that have come in.
    pub(crate) fn saved(&self) -> impl Iterator<Item = Saved> + '_ {
        self.saved.try_iter()
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One partition as the writer knows it.
struct Chain {
    /// The state the captures so far add up to.
    shadow: Partition,
    /// Sequence number of the last link written or attempted.
    seq: u64,
    /// Checksum of the last durable link (`None`: none, or the last write
    /// failed, so the next link must be a base).
    tip: Option<u64>,
    deltas_since_base: u32,
}

struct Writer {
    shared: Arc<Shared>,
    saved: Sender<Saved>,
    chains: HashMap<Key, Chain>,
}

impl Writer {
    fn new(shared: Arc<Shared>, saved: Sender<Saved>) -> Self {
        Self {
            shared,
            saved,
            chains: HashMap::new(),
        }
    }

    fn run(mut self, jobs: Receiver<Job>) {
        for job in jobs {
            match job {
                Job::Adopt(key, restored) => self.adopt(key, restored),
                Job::Forget(key) => {
                    self.chains.remove(&key);
                }
                Job::Save(captures) => self.save(captures),
                Job::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn adopt(&mut self, key: Key, restored: Option<Restored>) {
        let shared = &self.shared;
        let fresh = || Partition::new(shared.settings.clone(), shared.dedup_share);
        let chain = match restored {
            None => Chain {
                shadow: fresh(),
                seq: 0,
                tip: None,
                deltas_since_base: 0,
            },
            Some(restored) => {
                // The member restored the same chain already: this cannot
                // fail unless memory does, and then a base from scratch
                // would be wrong, so the run stops.
                match Partition::restore(
                    shared.settings.clone(),
                    shared.dedup_share,
                    &restored.chain,
                ) {
                    Ok(shadow) => Chain {
                        shadow,
                        seq: restored.seq,
                        tip: restored.tip,
                        deltas_since_base: restored.deltas,
                    },
                    Err(error) => {
                        shared.fail(KafkaError::Restore {
                            topic: key.0.clone(),
                            partition: key.1,
                            reason: error.to_string(),
                        });
                        return;
                    }
                }
            }
        };
        self.chains.insert(key, chain);
    }

    fn save(&mut self, captures: Vec<(Key, Checkpoint)>) {
        let shared = &self.shared;
        // Outputs first: a checkpoint must never cover a dead letter or an
        // alert that is not delivered.
        let mut writable = match shared.outputs.flush(shared.config.connect_timeout) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "outputs not yet delivered; checkpoint postponed");
                false
            }
        };
        let lost = shared
            .outputs
            .deliveries()
            .lost_outputs
            .load(Ordering::SeqCst);
        if lost > 0 {
            shared.fail(KafkaError::OutputsLost(lost));
            writable = false;
        }
        let deltas_per_base = shared.config.checkpoint.deltas_per_base;
        for (key, delta) in captures {
            let Some(chain) = self.chains.get_mut(&key) else {
                continue; // forgotten meanwhile
            };
            let next = delta.next_offset;
            if let Err(error) = chain.shadow.extend(&delta) {
                shared.fail(KafkaError::Restore {
                    topic: key.0.clone(),
                    partition: key.1,
                    reason: format!("a captured checkpoint does not extend its chain: {error}"),
                });
                return;
            }
            let durable = writable && Self::write(shared, &key, chain, delta, deltas_per_base);
            if !durable {
                chain.tip = None;
            }
            let _ = self.saved.send(Saved {
                topic: key.0,
                partition: key.1,
                next,
                durable,
            });
        }
    }

    /// Writes the next link: `delta`, or a base from the shadow when one is
    /// due or the chain is broken.
    fn write(
        shared: &Shared,
        key: &Key,
        chain: &mut Chain,
        delta: Checkpoint,
        deltas_per_base: u32,
    ) -> bool {
        let started = Instant::now();
        chain.seq += 1;
        let base = chain.tip.is_none() || chain.deltas_since_base >= deltas_per_base;
        let link = if base {
            chain.shadow.capture(chain.seq, CheckpointKind::Base)
        } else {
            Checkpoint {
                seq: chain.seq,
                parent: chain.tip,
                ..delta
            }
        };
        match shared.store.save(&key.0, key.1, &link) {
            Ok(checksum) => {
                chain.tip = Some(checksum);
                chain.deltas_since_base = if base { 0 } else { chain.deltas_since_base + 1 };
                tracing::debug!(topic = %key.0, partition = key.1, seq = link.seq, kind = link.kind.as_str(), ms = started.elapsed().as_secs_f64() * 1e3, "checkpoint durable");
                true
            }
            Err(error) => {
                tracing::error!(topic = %key.0, partition = key.1, %error, "checkpoint failed; the next one will be a full one");
                false
            }
        }
    }
}
