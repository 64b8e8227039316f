//! Ctrl-C (SIGINT) and SIGTERM for `run` and `backfill`: the first stops the pass through a
//! [`StopSignal`] (in-flight jobs get a few seconds, everything else stays open in the ledger);
//! a second one exits at once (still safe: the ledger keeps every unfinished blob open).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use shared::app::local::StopSignal;

/// Exit status after SIGINT (128 + 2, the shell's convention).
pub const EXIT_SIGINT: u8 = 130;
/// Exit status after SIGTERM (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;

/// The process's stop request, raised by the first SIGINT or SIGTERM.
#[derive(Debug, Clone)]
pub struct Interrupt {
    stop: StopSignal,
    /// The exit status of the signal received (0: none yet).
    code: Arc<AtomicU8>,
}

impl Interrupt {
    /// Installs the handlers (replacing the default "die at once") and returns the request.
    ///
    /// # Errors
    /// When the handlers cannot be installed.
    pub fn install() -> Result<Interrupt, String> {
        let me = Interrupt {
            stop: StopSignal::new(),
            code: Arc::new(AtomicU8::new(0)),
        };
        let mut signals = Signals::new()?;
        let task = me.clone();
        tokio::spawn(async move {
            loop {
                let code = signals.next().await;
                if task.code.load(Ordering::SeqCst) != 0 {
                    eprintln!(
                        "second signal: exiting now (unfinished blobs stay open in the ledger; the next run collects them)"
                    );
                    std::process::exit(i32::from(code));
                }
                task.code.store(code, Ordering::SeqCst);
                eprintln!(
                    "stopping: no new work; jobs in flight get a few seconds to finish (signal again to exit at once)"
                );
                task.stop.stop();
            }
        });
        Ok(me)
    }

    /// The stop signal to hand to a pass.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// The exit status of the signal received, if one was.
    pub fn code(&self) -> Option<u8> {
        match self.code.load(Ordering::SeqCst) {
            0 => None,
            c => Some(c),
        }
    }

    /// Resolves once a signal has been received.
    pub async fn stopped(&self) {
        self.stop.stopped().await;
    }
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let e = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(e)?,
            term: signal(SignalKind::terminate()).map_err(e)?,
        })
    }

    /// The next signal, as its exit status.
    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => EXIT_SIGINT,
            _ = self.term.recv() => EXIT_SIGTERM,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Result<Signals, String> {
        Ok(Signals)
    }

    async fn next(&mut self) -> u8 {
        match tokio::signal::ctrl_c().await {
            Ok(()) => EXIT_SIGINT,
            // No handler: never resolve (the default Ctrl-C behaviour stays).
            Err(_) => std::future::pending().await,
        }
    }
}
