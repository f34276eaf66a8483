//! The bundle format read by the tools a stranger has: GNU tar (`--format=posix` reading,
//! `-b 512`), Python's tarfile, and `sha256sum -c` in the extracted directory.
#![allow(clippy::unwrap_used)]

use cairn_archive::bundle::{self, BundleHead, Member, ObjectSource, RecordSink, SmallFiles};
use cairn_archive::{ArchiveError, RECORD_SIZE};
use cairn_store::HoldRecord;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

struct FileSink(std::fs::File, u64);
impl RecordSink for FileSink {
    fn write_record(&mut self, record: &[u8]) -> Result<(), ArchiveError> {
        assert_eq!(record.len(), RECORD_SIZE);
        self.0.write_all(record).unwrap();
        self.1 += 1;
        Ok(())
    }
}

struct DirObjects(PathBuf);
impl ObjectSource for DirObjects {
    fn open(&self, sha256: &str) -> Result<Box<dyn std::io::Read>, ArchiveError> {
        Ok(Box::new(std::fs::File::open(self.0.join(sha256)).unwrap()))
    }
}

fn tool(cmd: &str) {
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {cmd}"))
            .status()
            .unwrap()
            .success(),
        "{cmd} is needed (tools/test installs it)"
    );
}

/// Objects of assorted sizes (empty, odd, several records) with awkward metadata.
fn objects(dir: &Path) -> Vec<Member> {
    let mut out = Vec::new();
    for (i, size) in [0usize, 1, 511, 512, 513, 300_000, RECORD_SIZE * 2 + 7]
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..*size).map(|k| (k * 31 + i * 7) as u8).collect();
        let sha = hex::encode(Sha256::digest(&bytes));
        std::fs::write(dir.join(&sha), &bytes).unwrap();
        let mut m = Member {
            sha256: sha,
            size: *size as u64,
            received_at: "2026-11-22T10:00:00.000000Z".into(),
            source_ae: "CT1".into(),
            ..Default::default()
        };
        m.record.sop_instance_uid = format!("1.2.826.0.1.3680043.2.1.{i}");
        m.record.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2".into();
        m.record.patient.id = format!("P{i}");
        m.record.patient.name = "Doe^Jane \"Q\", Jr".into();
        m.record.study.uid = "1.2.3.4".into();
        m.record.study.date = "20240131".into();
        m.record.study.description = "line1\nline2, é".into();
        m.record.series.uid = "1.2.3.4.5".into();
        out.push(m);
    }
    out
}

fn head(n: usize) -> BundleHead {
    BundleHead {
        format: "cairn-bundle".into(),
        format_version: bundle::FORMAT_VERSION,
        bundle_id: "TEST-T1.1".into(),
        volume_id: "TEST-T1".into(),
        box_id: "TEST".into(),
        closed_at: "2026-11-22T10:00:00Z".into(),
        members: n as u64,
        audit_seq: 7,
        audit_hash: "ab".repeat(32),
    }
}

/// Two legal holds, one released, with a reason that needs quoting.
fn holds() -> Vec<HoldRecord> {
    vec![
        HoldRecord {
            id: 1,
            patient_id: Some("P1".into()),
            issuer: Some("HOSP".into()),
            reason: "litigation \"X\", case 7\nsecond line".into(),
            placed_by: "admin".into(),
            placed_at: "2026-11-01T08:00:00Z".into(),
            ..Default::default()
        },
        HoldRecord {
            id: 2,
            study_uid: Some("1.2.3.4".into()),
            reason: "audit".into(),
            placed_by: "dpo".into(),
            placed_at: "2026-11-02T08:00:00Z".into(),
            released_by: Some("admin".into()),
            released_at: Some("2026-11-03T08:00:00Z".into()),
            release_reason: Some("closed".into()),
            ..Default::default()
        },
    ]
}

fn write(dir: &Path, ustar_limit: Option<u64>) -> (PathBuf, Vec<Member>) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let members = objects(&src);
    let small = SmallFiles::new(&head(members.len()), &members, &holds()).unwrap();
    let path = dir.join("bundle.tar");
    let mut sink = FileSink(std::fs::File::create(&path).unwrap(), 0);
    match ustar_limit {
        None => {
            bundle::write_tar(
                &mut sink,
                RECORD_SIZE,
                &small,
                &members,
                &DirObjects(src.clone()),
                1_700_000_000,
            )
            .unwrap();
        }
        Some(limit) => {
            // the pax path: sizes above `limit` get an `x` header
            let mut t =
                bundle::TarStreamer::new(&mut sink, RECORD_SIZE).with_ustar_size_limit(limit);
            for (name, bytes) in small.in_order() {
                t.add_bytes(name, bytes, 1).unwrap();
            }
            t.add_dir("objects/", 1).unwrap();
            for m in &members {
                let mut f = std::fs::File::open(src.join(&m.sha256)).unwrap();
                let got = t.add_stream(&m.path(), m.size, 1, &mut f).unwrap();
                assert_eq!(got, m.sha256);
            }
            t.finish().unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len % RECORD_SIZE as u64, 0, "whole 256 KiB records");
    (path, members)
}

fn check_with_tools(dir: &Path, tar: &Path, members: &[Member]) {
    tool("tar");
    tool("python3");
    tool("sha256sum");
    // GNU tar, strict POSIX reading, 256 KiB records
    let out = dir.join("x");
    std::fs::create_dir_all(&out).unwrap();
    let st = Command::new("tar")
        .args(["--format=posix", "-b", "512", "-xf"])
        .arg(tar)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    for m in members {
        let got = std::fs::read(out.join(m.path())).unwrap();
        assert_eq!(got.len() as u64, m.size);
        assert_eq!(hex::encode(Sha256::digest(&got)), m.sha256);
    }
    let st = Command::new("sha256sum")
        .args(["--strict", "-c", "MANIFEST.sha256"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let ok_lines = String::from_utf8_lossy(&st.stdout).matches(": OK").count();
    assert_eq!(
        ok_lines,
        members.len() + 3,
        "every object plus index.csv, the head and holds.csv"
    );
    // tamper: sha256sum must notice
    let victim = out.join(members[3].path());
    std::fs::write(&victim, b"tampered").unwrap();
    let st = Command::new("sha256sum")
        .args(["-c", "MANIFEST.sha256"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(!st.status.success());

    // Python's tarfile: PAX or USTAR members only, no GNU types, no global headers
    let script = r#"
import sys, tarfile, hashlib
t = tarfile.open(sys.argv[1], 'r:')
n = 0
for m in t.getmembers():
    assert m.type in (tarfile.REGTYPE, tarfile.DIRTYPE), (m.name, m.type)
    if m.isfile() and m.name.startswith('objects/'):
        data = t.extractfile(m).read()
        assert hashlib.sha256(data).hexdigest() + '.dcm' == m.name[len('objects/'):], m.name
        n += 1
raw = open(sys.argv[1], 'rb').read()
pos = 0
flags = set()
pax_size = None
while pos + 512 <= len(raw):
    h = raw[pos:pos+512]
    if h == b'\0' * 512:
        break
    flags.add(chr(h[156]))
    assert h[257:263] == b'ustar\0' and h[263:265] == b'00', 'not POSIX ustar magic'
    size = int(h[124:136].strip(b'\0 ') or b'0', 8)
    if h[156:157] == b'x':
        rec = raw[pos+512:pos+512+size].decode()
        for line in rec.splitlines():
            k, v = line.split(' ', 1)[1].split('=', 1)
            if k == 'size':
                pax_size = int(v)
    elif pax_size is not None:
        size = pax_size
        pax_size = None
    pos += 512 + (size + 511) // 512 * 512
assert not (flags & set('gLKSMNV')), flags
print(n)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        members.len().to_string()
    );
}

#[test]
fn bundle_reads_with_gnu_tar_python_and_sha256sum() {
    let tmp = tempfile::tempdir().unwrap();
    let (tar, members) = write(tmp.path(), None);
    check_with_tools(tmp.path(), &tar, &members);
    // our own reader agrees, and index.csv round-trips
    let rb = bundle::read_back(std::fs::File::open(&tar).unwrap()).unwrap();
    assert!(rb.all_good(), "{rb:?}");
    assert_eq!(rb.members, members);
    assert_eq!(rb.head.unwrap().audit_seq, 7);
    assert_eq!(rb.holds, Some(holds()));
    // holds.csv is the fourth member, read by GNU tar alone
    let out = Command::new("tar")
        .args(["--format=posix", "-b", "512", "-xOf"])
        .arg(&tar)
        .arg(bundle::HOLDS_CSV)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(bundle::parse_holds_csv(&text).unwrap(), holds());
    let list = Command::new("tar")
        .args(["-b", "512", "-tf"])
        .arg(&tar)
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .take(5)
        .map(String::from)
        .collect();
    assert_eq!(
        names,
        [
            "MANIFEST.sha256",
            "index.csv",
            "AUDIT-HEAD.json",
            "holds.csv",
            "objects/"
        ]
    );
}

#[test]
fn a_bundle_without_holds_csv_still_reads_back() {
    // the format before holds.csv: manifest, index.csv, the head, the objects
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let members = objects(&src);
    let small = SmallFiles::new(&head(members.len()), &members, &[]).unwrap();
    let old = [
        (bundle::INDEX_CSV, &small.index[..]),
        (bundle::AUDIT_HEAD, &small.head[..]),
    ];
    let manifest = bundle::manifest(&old, &members);
    let tar = tmp.path().join("old.tar");
    let mut sink = FileSink(std::fs::File::create(&tar).unwrap(), 0);
    let mut t = bundle::TarStreamer::new(&mut sink, RECORD_SIZE);
    t.add_bytes(bundle::MANIFEST, manifest.as_bytes(), 1)
        .unwrap();
    for (name, bytes) in old {
        t.add_bytes(name, bytes, 1).unwrap();
    }
    t.add_dir("objects/", 1).unwrap();
    for m in &members {
        let mut f = std::fs::File::open(src.join(&m.sha256)).unwrap();
        t.add_stream(&m.path(), m.size, 1, &mut f).unwrap();
    }
    t.finish().unwrap();
    let rb = bundle::read_back(std::fs::File::open(&tar).unwrap()).unwrap();
    assert!(rb.all_good(), "{rb:?}");
    assert_eq!(rb.members, members);
    assert_eq!(rb.holds, None);
}

#[test]
fn pax_size_headers_read_with_gnu_tar_and_python() {
    let tmp = tempfile::tempdir().unwrap();
    let (tar, members) = write(tmp.path(), Some(1000));
    let raw = std::fs::read(&tar).unwrap();
    let x_headers = raw
        .chunks(512)
        .filter(|h| h[257..263] == *b"ustar\0" && h[156] == b'x')
        .count();
    assert!(
        x_headers >= 2,
        "objects above the limit carry a pax size record"
    );
    check_with_tools(tmp.path(), &tar, &members);
}

#[test]
fn read_back_detects_a_changed_byte_and_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (tar, members) = write(tmp.path(), None);
    let mut raw = std::fs::read(&tar).unwrap();
    // flip one byte inside the largest object's data
    let big = members.iter().max_by_key(|m| m.size).unwrap();
    let name = big.path();
    let at = (0..raw.len() / 512)
        .map(|b| b * 512)
        .find(|&o| raw[o..].starts_with(name.as_bytes()))
        .unwrap();
    let data_start = at + 512 + 1000;
    raw[data_start] ^= 0xff;
    let rb = bundle::read_back(&raw[..]).unwrap();
    assert!(!rb.all_good());
    assert_eq!(rb.bad, vec![name.clone()]);
    assert_eq!(rb.good.len(), members.len() - 1);
    // cut short: not complete
    raw[data_start] ^= 0xff;
    let rb = bundle::read_back(&raw[..RECORD_SIZE]).unwrap();
    assert!(!rb.complete && !rb.all_good());
}

#[test]
fn a_damaged_hot_copy_aborts_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let members = objects(&src);
    std::fs::write(
        src.join(&members[5].sha256),
        vec![0u8; members[5].size as usize],
    )
    .unwrap();
    let small = SmallFiles::new(&head(members.len()), &members, &[]).unwrap();
    let mut sink = FileSink(std::fs::File::create(tmp.path().join("b.tar")).unwrap(), 0);
    let e = bundle::write_tar(
        &mut sink,
        RECORD_SIZE,
        &small,
        &members,
        &DirObjects(src),
        1,
    )
    .unwrap_err();
    assert!(
        matches!(e, ArchiveError::HotCopyDamaged { ref sha256 } if *sha256 == members[5].sha256)
    );
}
