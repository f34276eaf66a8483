//! Archive throughput into the emulated tape: `throughput DIR TOTAL_MIB OBJECT_KIB`.
//! Stores the objects, then times one flush (bundle write with hashing + read-back verify).
//! Put DIR on tmpfs (/dev/shm) to measure the archiver rather than the disk.

use cairn_archive::engine::{Archiver, Drive, Policy, TargetSpec};
use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_hal::tape::EmulatedTape;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: throughput DIR TOTAL_MIB OBJECT_KIB");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let total: u64 = args[2].parse::<u64>()? << 20;
    let size: usize = args[3].parse::<usize>()? << 10;
    let data = DataDir::new(dir.join("data"));
    let drive = dir.join("tape");
    emulator::insert_blank(
        &drive,
        &CartridgeSpec {
            id: "BENCH1".into(),
            capacity: total * 2 + (1 << 30),
            early_warning: total * 2 + (1 << 29),
        },
    )?;
    let store = Store::open(data.clone())?;
    let d = drive.clone();
    let mut a = Archiver::new(
        store.clone(),
        Policy {
            box_id: "BENCH".into(),
            bundle_max_bytes: 1 << 30,
            bundle_max_age: Duration::from_secs(3600),
            bundle_max_members: 1_000_000,
            volume_name_prefix: "CAIRN".into(),
        },
        vec![TargetSpec {
            name: "tape".into(),
            kind: "tape".into(),
            open: Box::new(move || Ok(Drive::Tape(Box::new(EmulatedTape::open(&d)?)))),
        }],
    )?;
    a.load(None, "bench")?;
    let n = (total / size as u64).max(1);
    let mut buf = vec![0u8; size];
    for i in 0..n {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        for (k, b) in buf.iter_mut().enumerate().skip(8).step_by(4096) {
            *b = (k as u64 ^ i) as u8;
        }
        let mut w = store.spool()?;
        w.write(&buf)?;
        let spool = w.finish()?;
        let mut record = InstanceRecord {
            sop_instance_uid: format!("1.2.3.{i}"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        record.study.uid = format!("1.2.3.9.{}", i / 100);
        record.series.uid = format!("1.2.3.8.{}", i / 100);
        store.commit(StoreJob {
            spool,
            record,
            source_ae: "BENCH".into(),
        })?;
    }
    let cpu0 = cpu_secs();
    let t = Instant::now();
    a.flush(None)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let bytes = n * size as u64;
    println!(
        "{n} objects of {} KiB, {:.0} MiB: written, read back and verified in {secs:.2} s = {:.0} MB/s",
        size >> 10,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / 1e6 / secs
    );
    println!(
        "CPU time of this process during the flush: {cpu:.2} s = {:.0} MB per CPU-second \
         (the rate on an otherwise idle core)",
        bytes as f64 / 1e6 / cpu.max(1e-9)
    );
    drop(a);
    store.close()?;
    Ok(())
}

/// User + system CPU seconds of this process so far (from /proc/self/stat).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 of stat are at 11 and 12 after the command name
    (ticks(11) + ticks(12)) / 100.0
}
