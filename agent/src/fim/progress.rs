//! Scan counters, and a progress line (files/s, MB/s) on stderr when, and
//! only when, stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters shared by the scan threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries recorded.
    pub files: AtomicU64,
    /// Bytes hashed.
    pub bytes: AtomicU64,
}

/// A running progress display; dropping it clears the line.
pub struct Progress {
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts a display of `counters` if stderr is a terminal; silent otherwise.
    pub fn start(label: &'static str, counters: Arc<Counters>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                stop,
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(label);
        let b = bar.clone();
        let s = stop.clone();
        let ticker = std::thread::Builder::new()
            .name("fim-progress".into())
            .spawn(move || {
                let t0 = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let secs = t0.elapsed().as_secs_f64().max(0.001);
                    let files = counters.files.load(Ordering::Relaxed);
                    let bytes = counters.bytes.load(Ordering::Relaxed);
                    #[allow(clippy::cast_precision_loss)] // display only
                    b.set_message(format!(
                        "{files} files, {:.1} MB hashed | {:.0} files/s, {:.1} MB/s",
                        bytes as f64 / 1e6,
                        files as f64 / secs,
                        bytes as f64 / 1e6 / secs
                    ));
                    b.tick();
                }
            })
            .ok();
        Progress {
            bar: Some(bar),
            stop,
            ticker,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
