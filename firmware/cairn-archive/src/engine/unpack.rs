//! Objects restored from a bundle (a tape file's tar stream or an extracted disc session) back
//! into the store through its normal durable path (spool, hash, writer).

use crate::bundle::Member;
use crate::{ArchiveError, RECORD_SIZE};
use cairn_store::{DataDir, Store, StoreJob};
use std::collections::HashSet;

/// The instance records of a bundle, by SHA-256 (from its `index.csv`).
fn records_by_sha(members: &[Member]) -> std::collections::HashMap<String, Member> {
    members
        .iter()
        .map(|m| (m.sha256.clone(), m.clone()))
        .collect()
}

/// Hand one restored object to the store's writer, audited as a restore `by` the requester.
fn commit_restored(
    store: &Store,
    spool: cairn_store::SpoolWriter,
    m: &Member,
    by: &str,
) -> Result<bool, ArchiveError> {
    let finished = spool.finish()?;
    if finished.sha256 != m.sha256 {
        tracing::error!(sha256 = %m.sha256, "restored bytes do not match their SHA-256; not stored");
        return Ok(false);
    }
    store.commit_restored(
        StoreJob {
            spool: finished,
            record: m.record.clone(),
            source_ae: if m.source_ae.is_empty() {
                "RESTORE".into()
            } else {
                m.source_ae.clone()
            },
        },
        by,
    )?;
    Ok(true)
}

/// Restore the wanted objects from a bundle's tar stream (audited as a restore `by` the
/// requester).
pub fn restore_from_tar(
    store: &Store,
    data: &DataDir,
    r: &mut dyn std::io::Read,
    wanted: &mut HashSet<String>,
    by: &str,
) -> Result<usize, ArchiveError> {
    let _ = data;
    let mut tar = crate::pax::Reader::new(r);
    let mut members = std::collections::HashMap::new();
    let mut n = 0;
    let mut buf = vec![0u8; RECORD_SIZE];
    while let Some(e) = tar
        .next_entry()
        .map_err(|e| ArchiveError::Format(e.to_string()))?
    {
        if e.path == crate::bundle::INDEX_CSV {
            let mut text = Vec::new();
            loop {
                let k = tar
                    .read_data(&mut buf)
                    .map_err(|e| ArchiveError::Format(e.to_string()))?;
                if k == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..k]);
            }
            members = records_by_sha(&crate::bundle::parse_index_csv(&String::from_utf8_lossy(
                &text,
            ))?);
            continue;
        }
        let Some(sha) = e
            .path
            .strip_prefix("objects/")
            .and_then(|s| s.strip_suffix(".dcm"))
        else {
            continue;
        };
        if !wanted.contains(sha) {
            continue;
        }
        let Some(m) = members.get(sha) else { continue };
        let mut spool = store.spool()?;
        loop {
            let k = tar
                .read_data(&mut buf)
                .map_err(|e| ArchiveError::Format(e.to_string()))?;
            if k == 0 {
                break;
            }
            spool.write(&buf[..k])?;
        }
        if commit_restored(store, spool, m, by)? {
            wanted.remove(sha);
            n += 1;
        }
    }
    Ok(n)
}

/// Restore the wanted objects from an extracted bundle directory (optical), audited as a
/// restore `by` the requester.
pub fn restore_from_dir(
    store: &Store,
    dir: &std::path::Path,
    wanted: &mut HashSet<String>,
    by: &str,
) -> Result<usize, ArchiveError> {
    let text = std::fs::read_to_string(dir.join(crate::bundle::INDEX_CSV))
        .map_err(|e| ArchiveError::Format(format!("index.csv: {e}")))?;
    let members = crate::bundle::parse_index_csv(&text)?;
    let mut n = 0;
    let mut buf = vec![0u8; RECORD_SIZE];
    for m in members {
        if !wanted.contains(&m.sha256) {
            continue;
        }
        let mut f = match std::fs::File::open(dir.join(m.path())) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let mut spool = store.spool()?;
        loop {
            let k = std::io::Read::read(&mut f, &mut buf)
                .map_err(|e| ArchiveError::Io(e.to_string()))?;
            if k == 0 {
                break;
            }
            spool.write(&buf[..k])?;
        }
        if commit_restored(store, spool, &m, by)? {
            wanted.remove(&m.sha256);
            n += 1;
        }
    }
    Ok(n)
}
