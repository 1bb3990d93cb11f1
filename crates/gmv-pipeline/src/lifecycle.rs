//! One shutdown path for every run: a cancellation token passed down to
//! every task, a guard that counts the tasks still running, and the first
//! failure, which cancels the rest.
//!
//! Tasks are plain threads (the hot path runs on them) or tokio tasks (the
//! HTTP side); both see the same [`CancellationToken`]. SIGINT and SIGTERM
//! cancel it too, remembering which signal, so the binary can map how a run
//! ended to its exit code.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// An error a task ended with.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Still running, or the input ended (nothing cancelled it).
    Running,
    /// A signal asked it to stop (its number: SIGINT 2, SIGTERM 15).
    Signal(i32),
    /// A task failed; [`Lifecycle::take_failure`] says how.
    Failed,
    /// Stopped by the run itself (a batch job that found its end).
    Finished,
}

struct Inner {
    token: CancellationToken,
    /// The last signal received (0: none), whether or not it was the cause.
    signal: std::sync::atomic::AtomicI32,
    cause: Mutex<StopCause>,
    failure: Mutex<Option<TaskError>>,
    running: Mutex<usize>,
    idle: Condvar,
    /// Longest a stop may take once asked for (see [`Lifecycle::bound_stops`]);
    /// taken when its timer starts.
    grace: Mutex<Option<Duration>>,
}

/// The shared shutdown state of one run (cheap to clone).
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts one running task; dropping it (however the task ends) counts it
/// out.
pub struct TaskGuard {
    lifecycle: Lifecycle,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let inner = &self.lifecycle.inner;
        let mut running = inner.running.lock();
        *running -= 1;
        if *running == 0 {
            inner.idle.notify_all();
        }
    }
}

impl Lifecycle {
    /// A run with nothing started and nothing cancelled.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                token: CancellationToken::new(),
                signal: std::sync::atomic::AtomicI32::new(0),
                cause: Mutex::new(StopCause::Running),
                failure: Mutex::new(None),
                running: Mutex::new(0),
                idle: Condvar::new(),
                grace: Mutex::new(None),
            }),
        }
    }

    /// The token every task watches.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Whether the run is stopping.
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Bounds every stop of this run: once asked to stop by a signal or a
    /// failure, the process has `grace` to finish
    /// (final checkpoints, commits, the report); past it, it exits at once
    /// with the stop's exit code, whatever a broker it waits on is doing.
    /// Nothing counted is lost that way: a partition resumes from its last
    /// durable checkpoint, written only once its outputs were delivered.
    pub fn bound_stops(&self, grace: Duration) {
        *self.inner.grace.lock() = Some(grace);
    }

    /// Asks every task to stop; the first cause given is kept.
    pub fn cancel(&self, cause: StopCause) {
        {
            let mut held = self.inner.cause.lock();
            if *held == StopCause::Running {
                *held = cause;
            }
        }
        self.inner.token.cancel();
        // A run that found its own end finishes unhurried (and `gmv demo`
        // serves on after it).
        if cause != StopCause::Finished {
            self.start_grace();
        }
    }

    /// Starts the timer of [`Lifecycle::bound_stops`], once.
    fn start_grace(&self) {
        let Some(grace) = self.inner.grace.lock().take() else {
            return;
        };
        let lifecycle = self.clone();
        let _ = std::thread::Builder::new()
            .name("gmv-grace".into())
            .spawn(move || {
                std::thread::sleep(grace);
                let why = format!("the stop took longer than engine.shutdown_grace ({grace:?})");
                match lifecycle.cause() {
                    StopCause::Signal(signal) => exit_now(128 + signal, &why),
                    _ => {
                        let failure = lifecycle
                            .inner
                            .failure
                            .lock()
                            .as_ref()
                            .map(|e| e.to_string());
                        match failure {
                            Some(error) => exit_now(1, &format!("error: {error}; {why}")),
                            None => exit_now(1, &format!("error: {why}")),
                        }
                    }
                }
            });
    }

    /// Records a task's failure (the first one is kept) and stops the rest.
    pub fn fail(&self, error: TaskError) {
        tracing::error!(%error, "stopping");
        self.inner.failure.lock().get_or_insert(error);
        self.cancel(StopCause::Failed);
    }

    /// The last signal received, if any (also after the run ended on its
    /// own: a process that lingers, serving its results, waits for one).
    pub fn signal(&self) -> Option<i32> {
        Some(self.inner.signal.load(std::sync::atomic::Ordering::SeqCst)).filter(|&s| s != 0)
    }

    /// Why the run stopped (or [`StopCause::Running`]).
    pub fn cause(&self) -> StopCause {
        *self.inner.cause.lock()
    }

    /// The first failure, if any.
    pub fn take_failure(&self) -> Option<TaskError> {
        self.inner.failure.lock().take()
    }

    /// Counts a task as running until the guard is dropped.
    pub fn guard(&self) -> TaskGuard {
        *self.inner.running.lock() += 1;
        TaskGuard {
            lifecycle: self.clone(),
        }
    }

    /// Runs `task` on a thread of its own, counted; an error or a panic
    /// fails the run.
    pub fn spawn<F>(&self, name: &str, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce() -> Result<(), TaskError> + Send + 'static,
    {
        let guard = self.guard();
        let lifecycle = self.clone();
        let thread_name = name.to_owned();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _guard = guard;
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => lifecycle.fail(error),
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        lifecycle.fail(format!("thread {thread_name} panicked: {what}").into());
                    }
                }
            })
    }

    /// Waits until every counted task has ended, or `deadline` passes;
    /// returns whether they all ended.
    pub fn wait_all(&self, deadline: Option<Instant>) -> bool {
        let mut running = self.inner.running.lock();
        while *running > 0 {
            match deadline {
                None => self.inner.idle.wait(&mut running),
                Some(at) => {
                    if self.inner.idle.wait_until(&mut running, at).timed_out() {
                        return *running == 0;
                    }
                }
            }
        }
        true
    }

    /// Sleeps up to `period`, waking early if the run is cancelled; returns
    /// whether it was.
    pub fn sleep(&self, period: Duration) -> bool {
        let until = Instant::now() + period;
        while !self.is_cancelled() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        true
    }

    /// Cancels the run on SIGINT or SIGTERM, remembering which. Installed
    /// once per process, by the command that owns the run. The first
    /// starts the timer of [`Lifecycle::bound_stops`], here `grace`; a
    /// second one, [`SAME_REQUEST`] or more later, exits at once.
    pub fn cancel_on_signals(&self, grace: Duration) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        self.bound_stops(grace);
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let lifecycle = self.clone();
        std::thread::Builder::new()
            .name("gmv-signals".into())
            .spawn(move || {
                let mut first: Option<Instant> = None;
                for signal in signals.forever() {
                    match first {
                        Some(at) if at.elapsed() < SAME_REQUEST => continue,
                        Some(_) => exit_now(128 + signal, "a second signal came while stopping"),
                        None => first = Some(Instant::now()),
                    }
                    // Recorded whatever the run is doing: one that has ended
                    // and only serves on waits for exactly this.
                    lifecycle
                        .inner
                        .signal
                        .store(signal, std::sync::atomic::Ordering::SeqCst);
                    tracing::info!(
                        signal,
                        ?grace,
                        "signal received: finishing what was read, then stopping"
                    );
                    lifecycle.cancel(StopCause::Signal(signal));
                }
            })?;
        Ok(())
    }
}

/// Signals this close together are one request to stop: a terminal's
/// Ctrl-C or a service manager's SIGTERM reaches a Kafka run's worker
/// process both directly and forwarded by its parent.
pub const SAME_REQUEST: Duration = Duration::from_secs(1);

/// Ends the process with `code`, saying why it did not finish in order.
fn exit_now(code: i32, why: &str) -> ! {
    eprintln!(
        "gmv: {why}: exiting now. Partitions not checkpointed since their last checkpoint are read again from it on the next start (nothing is lost or counted twice); the report of this run, if not yet written, is not"
    );
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_cancels_the_rest_and_is_kept() {
        let lifecycle = Lifecycle::new();
        let watcher = {
            let token = lifecycle.token();
            lifecycle
                .spawn("watcher", move || {
                    while !token.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                })
                .unwrap()
        };
        lifecycle
            .spawn("failing", || Err("disk full".into()))
            .unwrap();
        lifecycle.spawn("panicking", || panic!("later")).unwrap();
        assert!(lifecycle.wait_all(Some(Instant::now() + Duration::from_secs(10))));
        watcher.join().unwrap();
        assert_eq!(lifecycle.cause(), StopCause::Failed);
        let failure = lifecycle.take_failure().unwrap().to_string();
        assert!(
            failure == "disk full" || failure.contains("panicked"),
            "{failure}"
        );
    }

    #[test]
    fn a_signal_cause_is_kept_over_later_ones() {
        let lifecycle = Lifecycle::new();
        lifecycle.cancel(StopCause::Signal(15));
        lifecycle.fail("after the signal".into());
        assert_eq!(lifecycle.cause(), StopCause::Signal(15));
        assert!(lifecycle.sleep(Duration::from_secs(5)));
    }
}
