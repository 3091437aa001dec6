//! Re-reads a configuration when its files change: their modification times and sizes are polled (certificates
//! change rarely, and polling needs no inotify plumbing that breaks on symlink swaps such as certbot's). A new
//! configuration that fails to build keeps the old one in force; the failure is logged and counted, and tried
//! again when the files change again.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Reloads counted by `result` (`ok`, `error`).
pub const RELOADS: &str = "sbc_tls_reloads_total";

/// A value built from files, shared with the tasks that use it; replaced when the files change.
#[derive(Debug)]
pub struct Reloading<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone() }
    }
}

/// What the watcher last saw of each file: modification time and size.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| std::fs::metadata(f).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        .collect()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Holds `initial`, never reloaded.
    pub fn fixed(initial: Arc<T>) -> Self {
        Self { current: Arc::new(RwLock::new(initial)) }
    }

    /// Builds the value with `build` and rebuilds it whenever `files` change, checked every `every` (needs a
    /// tokio runtime); `what` names it in logs. The files are looked at before the first build, so a change
    /// made while it runs is not missed.
    pub fn load<E: std::fmt::Display + Send + 'static>(
        what: String,
        files: Vec<PathBuf>,
        every: Duration,
        build: impl Fn() -> Result<Arc<T>, E> + Send + 'static,
    ) -> Result<Self, E> {
        let seen = stamp(&files);
        let me = Self::fixed(build()?);
        me.watch(what, files, seen, every, build);
        Ok(me)
    }

    /// The value in force now.
    pub fn get(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, v: Arc<T>) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }

    /// Polls `files` every `every` and rebuilds with `build` when they differ from `seen`. Runs until the
    /// runtime stops.
    fn watch<E: std::fmt::Display + Send + 'static>(
        &self,
        what: String,
        files: Vec<PathBuf>,
        mut seen: Stamp,
        every: Duration,
        build: impl Fn() -> Result<Arc<T>, E> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                match build() {
                    Ok(v) => {
                        me.set(v);
                        metrics::counter!(RELOADS, "result" => "ok").increment(1);
                        tracing::info!(config = %what, "TLS files changed: reloaded (new connections use them; open ones keep theirs)");
                    }
                    Err(e) => {
                        metrics::counter!(RELOADS, "result" => "error").increment(1);
                        tracing::warn!(config = %what, error = %e, "TLS files changed but cannot be used: keeping the previous ones");
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_file_is_picked_up_and_a_bad_one_keeps_the_old_value() {
        let dir = std::env::temp_dir().join(format!("sbc-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("value");
        std::fs::write(&file, "1").expect("write");
        let read = {
            let file = file.clone();
            move || -> Result<Arc<u32>, String> {
                let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                text.trim().parse::<u32>().map(Arc::new).map_err(|e| e.to_string())
            }
        };
        let r = Reloading::load("test".into(), vec![file.clone()], Duration::from_millis(20), read).expect("initial");
        let until = |want: u32| {
            let r = r.clone();
            async move {
                for _ in 0..250 {
                    if *r.get() == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        std::fs::write(&file, "22").expect("write");
        assert!(until(22).await, "the new value is in force");
        std::fs::write(&file, "not a number").expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*r.get(), 22, "a bad file keeps the previous value");
        std::fs::write(&file, "333").expect("write");
        assert!(until(333).await, "a good file after a bad one is picked up");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
