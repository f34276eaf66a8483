//! A tape file's record lengths: runs of equal-length records, as the `.rec` file stores them
//! (u32 length, u32 count, little endian).

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A run of equal-length records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) len: u32,
    pub(super) count: u64,
}

pub(super) fn runs_bytes(runs: &[Run]) -> u64 {
    runs.iter().map(|r| u64::from(r.len) * r.count).sum()
}

pub(super) fn runs_records(runs: &[Run]) -> u64 {
    runs.iter().map(|r| r.count).sum()
}

pub(super) fn push_run(runs: &mut Vec<Run>, len: u32, count: u64) {
    match runs.last_mut() {
        Some(last) if last.len == len => last.count += count,
        _ => runs.push(Run { len, count }),
    }
}

/// Reads a `.rec` file; a trailing partial entry (killed writer) is ignored.
pub(super) fn read_runs(path: &Path) -> std::io::Result<Vec<Run>> {
    let mut body = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut body)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut runs = Vec::new();
    for entry in body.chunks_exact(8) {
        let len = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let count = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        if len > 0 && count > 0 {
            push_run(&mut runs, len, u64::from(count));
        }
    }
    Ok(runs)
}

pub(super) fn encode_runs(runs: &[Run]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in runs {
        let mut left = r.count;
        while left > 0 {
            let c = left.min(u64::from(u32::MAX));
            out.extend_from_slice(&r.len.to_le_bytes());
            out.extend_from_slice(&(c as u32).to_le_bytes());
            left -= c;
        }
    }
    out
}

/// Keeps the first `records` records of `runs`.
pub(super) fn cut_runs(runs: &[Run], mut records: u64) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        if records == 0 {
            break;
        }
        let c = r.count.min(records);
        out.push(Run {
            len: r.len,
            count: c,
        });
        records -= c;
    }
    out
}

/// Keeps the whole records of `runs` that fit in `bytes`.
pub(super) fn runs_within(runs: &[Run], mut bytes: u64) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        let len = u64::from(r.len);
        let c = r.count.min(bytes / len);
        if c > 0 {
            out.push(Run {
                len: r.len,
                count: c,
            });
        }
        bytes -= c * len;
        if c < r.count {
            break;
        }
    }
    out
}
