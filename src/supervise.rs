//! `gmv run` on Kafka does its work in a child process of itself (the
//! worker) and waits for it. librdkafka can crash the process on some broker
//! answers (a broker back without its data within about a second:
//! librdkafka issue #5280), and no signal handler can catch that, because
//! librdkafka's threads block every signal. The parent stays small: it
//! forwards SIGINT and SIGTERM to the worker, passes the worker's exit code
//! on, and turns a crash into a plain error and exit 1. The worker dies with
//! its parent, so a SIGKILLed `gmv` leaves nothing running.

use crate::Ended;
use anyhow::{anyhow, Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

/// Set in the worker's environment to its parent's pid.
const WORKER_OF: &str = "GMV_WORKER_OF";

/// Whether this process is a worker started by [`run_in_worker`].
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_OF).is_some()
}

/// Runs this command line again in a worker process and waits for it;
/// returns how the worker ended, as this process's own ending.
pub fn run_in_worker() -> Result<Ended> {
    let program = std::env::current_exe().context("finding this program to start its worker")?;
    let parent = std::process::id();
    let mut command = Command::new(program);
    command
        .args(std::env::args_os().skip(1))
        .env(WORKER_OF, parent.to_string());
    // SAFETY: between fork and exec the closure only makes two system
    // calls, both async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the line above took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the parent process has ended"));
            }
            Ok(())
        });
    }
    // Registered before the worker starts: a signal in between is
    // forwarded as soon as it runs.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("listening for SIGINT and SIGTERM")?;
    let closer = signals.handle();
    let mut worker = command.spawn().context("starting the worker process")?;
    let pid = worker.id() as libc::pid_t;
    let forwarder = std::thread::Builder::new()
        .name("gmv-forward-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                // SAFETY: kill(2) with a pid this process started and
                // has not yet reaped.
                unsafe { libc::kill(pid, signal) };
            }
        })
        .context("starting the signal forwarder")?;
    let status = worker.wait().context("waiting for the worker process")?;
    closer.close();
    let _ = forwarder.join();
    if let Some(code) = status.code() {
        return Ok(Ended::Exit(u8::try_from(code).unwrap_or(1)));
    }
    let signal = status.signal().unwrap_or(0);
    ending_of_a_worker_killed_by(signal)
}

/// What a worker's death by `signal` means for the run.
fn ending_of_a_worker_killed_by(signal: i32) -> Result<Ended> {
    let name = signal_name(signal);
    match signal {
        // Forwarded before the worker could take them over: a stop asked for.
        SIGINT | SIGTERM => Ok(Ended::Signal(signal)),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGILL | libc::SIGFPE => Err(anyhow!(
            "the worker process crashed ({name}). A known cause is librdkafka issue #5280: \
             the Kafka client crashes when a broker comes back without its data within about a \
             second. Nothing counted is lost: the next start resumes each partition from its \
             last checkpoint, and stops with a clear error if the cluster no longer has the \
             records already read"
        )),
        _ => {
            eprintln!(
                "gmv: the worker process was killed ({name}; SIGKILL often means out of memory). \
                 The next start resumes each partition from its last checkpoint"
            );
            Ok(Ended::Signal(signal))
        }
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_an_error_and_a_kill_keeps_its_signal() {
        let crash = ending_of_a_worker_killed_by(libc::SIGSEGV).unwrap_err();
        assert!(crash.to_string().contains("crashed (SIGSEGV)"), "{crash}");
        assert!(crash.to_string().contains("#5280"), "{crash}");
        assert_eq!(
            ending_of_a_worker_killed_by(libc::SIGKILL).unwrap(),
            Ended::Signal(libc::SIGKILL)
        );
        assert_eq!(
            ending_of_a_worker_killed_by(SIGTERM).unwrap(),
            Ended::Signal(SIGTERM)
        );
    }
}
