//! The status pages, checked by calling the router with `oneshot` (no socket): the overview's
//! numbers, the Disks page from the RAID status and alarm state, and the Archive page in staff
//! words with its work in progress.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{form_post, start, Box_, R};
use serde_json::{json, Value};

/// The overview and the Disks page from a published RAID status and alarm state: the verdict,
/// the banner with Silence, the bays, SMART warnings, the rebuild bar with its ETA.
#[tokio::test]
async fn disks_page_shows_bays_rebuild_eta_and_smart_warnings() {
    let b = start();
    let admin = b.setup().await;
    let smart = |verdict: &str, warnings: &[&str]| {
        json!({"verdict": verdict, "warnings": warnings, "available": true, "passed": true,
               "model": "X", "serial": "S", "temperature_c": 35, "reallocated_sectors": 24,
               "pending_sectors": 0, "offline_uncorrectable": 0, "media_errors": null,
               "percentage_used": null, "exit_status": 0, "message": null})
    };
    let member = |bay: u32, state: &str, dev: &str, sm: Value| {
        json!({"bay": bay, "state": state, "device": dev, "slot": bay - 1, "flags": [],
               "errors": 0, "smart": sm})
    };
    let raid = json!({
        "updated_at_ms": 1, "board": "demo",
        "arrays": [{
            "name": "md0", "level": "raid6", "health": "degraded", "running": true,
            "raid_disks": 4, "degraded": 1, "sync_action": "recover", "rebuild_percent": 25.0,
            "progress": {"action": "recover", "percent": 25.0, "speed_kib": 102400, "eta_secs": 900},
            "mismatch_cnt": 0, "component_size_kib": 1048576,
            "members": [
                member(1, "in_sync", "sda", smart("ok", &[])),
                member(2, "in_sync", "sdb", smart("warning", &["24 reallocated sectors"])),
                member(3, "rebuilding", "sdg", smart("ok", &[])),
                member(4, "in_sync", "sdd", Value::Null),
            ]
        }],
        "bays": [
            {"bay": 1, "device": "sda", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 2, "device": "sdb", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 3, "device": "sdg", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 4, "device": "sdd", "size_bytes": 1_000_000_000u64, "fault": false}
        ],
        "blocked": []
    });
    std::fs::write(b.data.root().join("raid.json"), raid.to_string()).unwrap();
    let alarm = json!({"next_id": 1, "events": [{"id": 1, "kind": "disk-failed", "bay": 3,
        "array": "md0", "message": "The disk in bay 3 failed (md0)", "raised_at_ms": 1,
        "silenced": false, "silenced_by": null}]});
    std::fs::write(b.data.root().join("alarm.json"), alarm.to_string()).unwrap();
    let get = |p: &'static str| R {
        method: "GET",
        path: p,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let overview = b.send(get("/")).await;
    assert_eq!(overview.status, StatusCode::OK);
    // The overview speaks of "the disks", never of md0 (nor does the alarm banner above it),
    // and shows the rebuild as a bar with the time left.
    assert!(!overview.body.contains("md0"), "{}", overview.body);
    assert!(
        overview.body.contains("The disk in bay 3 failed"),
        "{}",
        overview.body
    );
    let main = overview.body.split("<main>").nth(1).unwrap();
    assert!(
        main.contains("Rebuilding the disks: 25 % done"),
        "{}",
        overview.body
    );
    assert!(!main.contains("md0"), "{main}");
    assert!(main.contains("aria-label=\"rebuild\""), "{main}");
    assert!(main.contains("value=\"25.0\""), "{main}");
    assert!(main.contains("about 15 min left"), "{main}");
    assert!(overview.body.contains("id=\"alarm-banner\""));
    assert!(overview.body.contains("id=\"silence\""));
    let disks = b.send(get("/disks")).await;
    assert_eq!(disks.status, StatusCode::OK);
    let body = &disks.body;
    assert_eq!(body.matches("data-bay=").count(), 4, "{body}");
    assert!(
        body.contains("class=\"bay rebuilding\" data-bay=\"3\""),
        "{body}"
    );
    assert!(body.contains("Bay 2: 24 reallocated sectors"), "{body}");
    assert!(body.contains("about 15 min left"), "{body}");
    assert!(body.contains("value=\"25.0\""), "{body}");
    // Silence is offered on every page, Audit included.
    let audit = b.send(get("/audit")).await;
    assert!(audit.body.contains("id=\"silence\""));
    let status = b.send(get("/api/v1/status")).await.json();
    assert_eq!(status["state"], "alarm");
    assert_eq!(status["sounding"], true);
    assert_eq!(status["raid"]["arrays"][0]["progress"]["eta_secs"], 900);
}

/// The overview says what its numbers are: storage "used", images "received today" and
/// "stored in all".
#[tokio::test]
async fn overview_numbers_say_what_they_count() {
    let b = start();
    let admin = b.setup().await;
    b.store_study("DOE^JOHN", "P1", "1.2.3.4", "A1");
    let r = b
        .send(R {
            method: "GET",
            path: "/",
            cookie: Some(&admin.0),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let main = r.body.split("<main>").nth(1).unwrap();
    assert!(main.contains(" % used</span>"), "{main}");
    assert!(main.contains("Images received today"), "{main}");
    assert!(main.contains("1 image stored in all, in 1 study"), "{main}");
    assert!(!main.contains("images kept"), "{main}");
    assert!(!main.contains(">Images today<"), "{main}");
}

/// A tape target with a volume in its drive, as the archive thread would have recorded it,
/// and the thread's live status doing `activity`.
fn archive_fixture(b: &Box_, activity: &str, message: &str) {
    let c = rusqlite::Connection::open(b.data.root().join("cairn.db")).unwrap();
    c.execute_batch(
        "INSERT OR IGNORE INTO cold_targets (id, name, kind, enabled, added_at)
           VALUES (1, 'tape', 'tape', 1, '2026-01-01T00:00:00Z');
         INSERT OR IGNORE INTO volumes (volume_id, kind, box_id, target_ref, state, location,
           format_version, block_size, capacity_bytes, bytes_written, labelled_at, updated_at)
           VALUES ('DEMO01', 'tape', 'DEMO', 1, 'append', 'in_drive', 1, 262144, 1000000,
             250000, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');",
    )
    .unwrap();
    let live = json!({"targets": [{"name": "tape", "drive": "ready", "activity": activity,
        "medium_needed": false, "message": message, "last_error": null,
        "updated_at": "2026-01-01T00:00:00Z"}]});
    std::fs::write(b.data.root().join("archive.json"), live.to_string()).unwrap();
}

/// The Archive page in staff words (no "append", no "bundle"), a progress bar while the
/// drive writes or checks, and a page that refreshes itself meanwhile.
#[tokio::test]
async fn archive_page_speaks_plainly_and_shows_work_in_progress() {
    let b = start();
    let admin = b.setup().await;
    let get = || R {
        method: "GET",
        path: "/archive",
        cookie: Some(&admin.0),
        ..Default::default()
    };
    archive_fixture(
        &b,
        "writing bundle DEMO01.3 (3 objects)",
        "bundle DEMO01.2 verified (2 objects)",
    );
    let r = b.send(get()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let main = r.body.split("<main>").nth(1).unwrap().to_lowercase();
    for jargon in ["append", "bundle", "cold cop", "objects"] {
        assert!(
            !main.contains(jargon),
            "'{jargon}' on the Archive page: {main}"
        );
    }
    assert!(main.contains("writing 3 images to the tape"), "{main}");
    assert!(main.contains("id=\"archive-work-tape\""), "{main}");
    assert!(main.contains("<progress"), "{main}");
    assert!(
        r.body.contains("http-equiv=\"refresh\" content=\"3\""),
        "{}",
        r.body
    );
    // Checking what was written: still a bar, still refreshing.
    archive_fixture(&b, "verifying bundle DEMO01.3", "");
    let r = b.send(get()).await;
    let main = r.body.split("<main>").nth(1).unwrap().to_lowercase();
    assert!(main.contains("reading back"), "{main}");
    assert!(main.contains("id=\"archive-work-tape\""), "{main}");
    assert!(r.body.contains("http-equiv=\"refresh\" content=\"3\""));
    // Idle: no bar, no fast refresh.
    archive_fixture(&b, "idle", "");
    let r = b.send(get()).await;
    assert!(!r.body.contains("archive-work-tape"), "{}", r.body);
    assert!(!r.body.contains("content=\"3\""), "{}", r.body);

    // An eject that takes longer than the page waits: the page answers at once with a bar
    // and follows it; once the archive thread answers, the next view says how it ended.
    let started = std::time::Instant::now();
    let r = b
        .send(form_post(
            "/archive",
            &admin.0,
            format!(
                "csrf={}&action=eject&target=tape&location=onsite_shelf",
                admin.1
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(r.body.contains("id=\"archive-job\""), "{}", r.body);
    assert!(r.body.contains("<progress"), "{}", r.body);
    assert!(
        r.body.contains("http-equiv=\"refresh\" content=\"3\""),
        "{}",
        r.body
    );
    assert!(b.send(get()).await.body.contains("id=\"archive-job\""));
    // The archive thread's answer (as cairnd would write it).
    let dir = b.data.root().join("requests/archive");
    let req = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a pending eject request");
    std::fs::write(
        req.with_extension("done"),
        json!({"ok": true, "message": "DEMO01 ejected; recorded as on the on-site shelf"})
            .to_string(),
    )
    .unwrap();
    let mut shown = String::new();
    for _ in 0..100 {
        shown = b.send(get()).await.body;
        if shown.contains("id=\"archive-message\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        shown.contains("DEMO01 ejected; recorded as on the on-site shelf"),
        "{shown}"
    );
    assert!(!shown.contains("id=\"archive-job\""), "{shown}");
    // Said once.
    assert!(!b.send(get()).await.body.contains("archive-message"));
}
