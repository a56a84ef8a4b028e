//! Live progress per vertex on stderr while a job runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Counters;

/// Spinners showing each vertex's rows in and out, updated until dropped.
pub(super) struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(vertices: &[(String, Arc<Counters>)]) -> Self {
        use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:<32} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = Vec::new();
        for (label, c) in vertices {
            let bar = multi.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix(label.clone()),
            );
            bars.push((bar, c.clone()));
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                for (bar, c) in &bars {
                    let rows_in = c.rows_in.load(Ordering::Relaxed);
                    let rows_out = c.rows_out.load(Ordering::Relaxed);
                    bar.set_message(format!(
                        "in {rows_in:>10}  out {rows_out:>10}  {:>10.0} ev/s",
                        rows_in.max(rows_out) as f64 / secs
                    ));
                    bar.tick();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for (bar, _) in &bars {
                bar.finish_and_clear();
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
