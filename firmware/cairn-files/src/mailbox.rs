//! The request mailbox between `cairnctl`/the panel and the daemon: a client drops
//! `<dir>/<name>.json` (a serde request, written atomically) and waits for `<dir>/<name>.done`
//! (a serde answer) beside it; the daemon answers each pending `.json` in name order and removes
//! it. Used by the RAID monitor (`requests/`), the archive thread (`requests/archive/`) and the
//! lifecycle thread (`requests/lifecycle/`); the request and answer types are theirs.

use crate::atomic::{atomic_write, Durability};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a waiting client looks for its answer.
const POLL: Duration = Duration::from_millis(50);

/// A request directory.
#[derive(Debug, Clone)]
pub struct Mailbox {
    dir: PathBuf,
}

/// A request could not be handed over or was not answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Writing the request failed.
    #[error("cannot write the request: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time; the request was withdrawn.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// A request to the daemon (see [`Mailbox::call`]) could not be handed over or was not answered,
/// worded for the person at the command line.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Creating the mailbox or writing the request file failed.
    #[error("cannot write the request: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time; the request was withdrawn.
    #[error("cairnd did not answer within {0:?} (is it running on this data directory?)")]
    Timeout(Duration),
}

/// A pending request file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a request of this mailbox.
    #[error("bad request: {0}")]
    Bad(#[from] serde_json::Error),
}

impl Mailbox {
    /// The mailbox in directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drop `req` as `<name>.json` without waiting (the directory must exist); returns the
    /// path of the `.done` answer the daemon will write.
    pub fn submit<Q: Serialize>(&self, req: &Q) -> Result<PathBuf, SendError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let body = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        atomic_write(
            &self.dir.join(format!("{name}.json")),
            &body,
            Durability::NotSynced,
        )?;
        Ok(self.dir.join(format!("{name}.done")))
    }

    /// Wait up to `wait` for the answer at `done` (from [`Mailbox::submit`]) and remove it.
    /// Without an answer in time the request is withdrawn, so a daemon started later does not
    /// act on it. Blocking (polls every 50 ms).
    pub fn wait<A: DeserializeOwned>(done: &Path, wait: Duration) -> Result<A, SendError> {
        let start = Instant::now();
        while start.elapsed() < wait {
            if let Ok(bytes) = std::fs::read(done) {
                if let Ok(a) = serde_json::from_slice::<A>(&bytes) {
                    let _ = std::fs::remove_file(done);
                    return Ok(a);
                }
            }
            std::thread::sleep(POLL);
        }
        let _ = std::fs::remove_file(done.with_extension("json"));
        Err(SendError::NoAnswer(wait))
    }

    /// [`Mailbox::submit`], then [`Mailbox::wait`].
    pub fn send<Q: Serialize, A: DeserializeOwned>(
        &self,
        req: &Q,
        wait: Duration,
    ) -> Result<A, SendError> {
        let done = self.submit(req)?;
        Self::wait(&done, wait)
    }

    /// A client's whole exchange with the daemon: create the mailbox directory if needed,
    /// [`Mailbox::send`] `req` and wait up to `wait` for the answer.
    pub fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        req: &Q,
        wait: Duration,
    ) -> Result<A, CallError> {
        std::fs::create_dir_all(&self.dir)?;
        self.send(req, wait).map_err(|e| match e {
            SendError::Io(e) => CallError::Io(e),
            SendError::NoAnswer(d) => CallError::Timeout(d),
        })
    }

    /// Answer every pending request with `handle`'s answer; a file that is not a request of
    /// this mailbox is answered with `refuse(why)`.
    pub fn serve_or_refuse<Q: DeserializeOwned, A: Serialize>(
        &self,
        mut handle: impl FnMut(Q) -> A,
        refuse: impl Fn(String) -> A,
    ) {
        self.serve(|req: Result<Q, ReadError>| match req {
            Ok(req) => handle(req),
            Err(e) => refuse(e.to_string()),
        });
    }

    /// The pending request files, oldest first (for the daemon).
    pub fn pending(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    }

    /// Read and parse one request file.
    pub fn read<Q: DeserializeOwned>(path: &Path) -> Result<Q, ReadError> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }

    /// Answer a request file (the daemon): removes the request and writes `<name>.done`.
    pub fn answer<A: Serialize>(path: &Path, answer: &A) {
        let _ = std::fs::remove_file(path);
        if let Ok(text) = serde_json::to_vec(answer) {
            let _ = atomic_write(&path.with_extension("done"), &text, Durability::NotSynced);
        }
    }

    /// Answer every pending request in name order with what `handle` makes of it.
    pub fn serve<Q: DeserializeOwned, A: Serialize>(
        &self,
        mut handle: impl FnMut(Result<Q, ReadError>) -> A,
    ) {
        for path in self.pending() {
            let answer = handle(Self::read(&path));
            Self::answer(&path, &answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Ask {
        n: u32,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Reply {
        twice: u32,
    }

    #[test]
    fn a_request_is_served_and_nothing_is_left_behind() {
        let d = tempfile::tempdir().unwrap();
        let mb = Mailbox::new(d.path());
        let server = {
            let mb = mb.clone();
            std::thread::spawn(move || loop {
                if !mb.pending().is_empty() {
                    mb.serve(|r: Result<Ask, ReadError>| Reply {
                        twice: r.unwrap().n * 2,
                    });
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            })
        };
        let r: Reply = mb.send(&Ask { n: 21 }, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(r, Reply { twice: 42 });
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_bad_request_is_answered_as_bad() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("1.json"), b"{\"x\":").unwrap();
        let mb = Mailbox::new(d.path());
        mb.serve(|r: Result<Ask, ReadError>| r.map_err(|e| e.to_string()).unwrap_err());
        let text = std::fs::read_to_string(d.path().join("1.done")).unwrap();
        assert!(text.starts_with("\"bad request: "), "{text}");
        assert!(!d.path().join("1.json").exists());
    }

    #[test]
    fn an_unanswered_request_is_withdrawn() {
        let d = tempfile::tempdir().unwrap();
        let mb = Mailbox::new(d.path());
        let e = mb
            .send::<_, Reply>(&Ask { n: 1 }, Duration::from_millis(120))
            .unwrap_err();
        assert!(matches!(e, SendError::NoAnswer(_)));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_call_creates_the_mailbox_and_says_when_nobody_answers() {
        let d = tempfile::tempdir().unwrap();
        let mb = Mailbox::new(d.path().join("requests/x"));
        let e = mb
            .call::<_, Reply>(&Ask { n: 1 }, Duration::from_millis(120))
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout(_)));
        assert!(e.to_string().contains("cairnd did not answer"), "{e}");
        assert!(mb.dir().is_dir());
        assert_eq!(std::fs::read_dir(mb.dir()).unwrap().count(), 0);
    }

    #[test]
    fn serve_or_refuse_answers_a_bad_file_with_the_refusal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("1.json"), b"{\"x\":").unwrap();
        let mb = Mailbox::new(d.path());
        mb.serve_or_refuse(|a: Ask| Reply { twice: 2 * a.n }, |_why| Reply { twice: 0 });
        let r: Reply = Mailbox::wait(&d.path().join("1.done"), Duration::from_secs(1)).unwrap();
        assert_eq!(r.twice, 0);
    }
}
