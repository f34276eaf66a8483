//! What the pages say instead of the engine's terms: the archive thread's activity and
//! messages, volume states, audit rows in sentences, and times in the box's time zone.
//! Pure functions of their input; the pages escape what they return.

mod lifecycle;

use serde_json::Value;

/// The archive thread is writing, checking or reading a medium (the page shows a bar and
/// refreshes itself meanwhile).
pub(crate) fn archive_busy(activity: &str) -> bool {
    ["writing", "verifying", "scanning", "restoring", "labelling"]
        .iter()
        .any(|w| activity.starts_with(w))
}

/// "tape" or "disc" for a target kind.
pub(crate) fn medium(kind: &str) -> &'static str {
    if kind == "optical" {
        "disc"
    } else {
        "tape"
    }
}

/// The number in "writing bundle X (12 objects)" or "collecting (12 queued)".
fn count_in(s: &str) -> Option<u64> {
    let open = s.rfind('(')?;
    s[open + 1..].split_whitespace().next()?.parse().ok()
}

fn images(n: u64) -> String {
    count(n as i64, "image", "images")
}

/// "1 study", "3 studies".
pub(crate) fn count(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What the archive thread does, for people (`kind`: the target's `tape` or `optical`;
/// `queued`: the images the catalog says wait, which wins over the count in the thread's last
/// published activity).
pub(crate) fn archive_activity(activity: &str, kind: &str, queued: i64) -> String {
    let m = medium(kind);
    let a = activity.trim();
    if a == "idle" || (a.starts_with("collecting") && queued == 0) {
        "Nothing to write now.".into()
    } else if a.starts_with("idle (queued instances skipped") {
        "Waiting: some images on the disks are damaged and cannot be copied.".into()
    } else if a.starts_with("collecting") {
        format!(
            "Gathering images to copy: {} waiting.",
            images(queued.max(0) as u64)
        )
    } else if a.starts_with("writing") {
        match count_in(a) {
            Some(n) => format!("Writing {} to the {m}.", images(n)),
            None => format!("Writing images to the {m}."),
        }
    } else if a.starts_with("verifying") {
        format!("Reading back what was written to the {m} and checking every image.")
    } else if a.starts_with("waiting for a writable medium") {
        format!("Waiting for a new {m}.")
    } else if a.starts_with("scanning") {
        format!("Reading the {m} to list what is on it.")
    } else if a.starts_with("restoring") {
        format!("Bringing images back from the {m}.")
    } else if a.starts_with("labelling") {
        format!("Preparing the new {m}.")
    } else if a == "starting" {
        "Starting.".into()
    } else if a.contains("not running") || a.contains("stopped") {
        "The box's archive is not running.".into()
    } else {
        plain(a)
    }
}

/// The engine's terms replaced by staff words in any other sentence.
fn plain(s: &str) -> String {
    let mut s = s.to_string();
    for state in ["blank", "labelled", "append", "full", "ejected", "error"] {
        s = s.replace(&format!("({state})"), &format!("({})", volume_state(state)));
    }
    s.replace("bundles", "batches of images")
        .replace("bundle", "batch of images")
        .replace("objects", "images")
        .replace("instances", "images")
}

/// The drive's last message, for people.
pub(crate) fn archive_message(message: &str, kind: &str) -> String {
    let m = message.trim();
    if m.starts_with("bundle ") && m.contains(" verified (") {
        return match count_in(m) {
            Some(n) => format!("{} written to the {} and checked.", images(n), medium(kind)),
            None => format!("Images written to the {} and checked.", medium(kind)),
        };
    }
    if let Some(rest) = m.strip_prefix("volume ") {
        if let Some((name, tail)) = rest.split_once(" labelled and in use") {
            return format!(
                "{name} is ready and in use{}.",
                plain(tail.trim_end_matches('.'))
            );
        }
    }
    plain(m)
}

/// A volume's state, for people.
pub(crate) fn volume_state(state: &str) -> String {
    match state {
        "blank" => "blank".into(),
        "labelled" => "ready, empty".into(),
        "append" => "in use".into(),
        "full" => "full".into(),
        "ejected" => "taken out".into(),
        "error" => "error".into(),
        other => other.replace('_', " "),
    }
}

/// A drive's state (`ready`, `no medium`, `foreign medium`...) for people.
pub(crate) fn plain_state(drive: &str) -> String {
    match drive {
        "no medium" => "empty".into(),
        "write protected" => "the medium in it is write-protected".into(),
        "foreign medium" => "holds a medium this box did not write".into(),
        "unreadable medium" => "cannot read the medium in it".into(),
        "unknown" => "not known yet".into(),
        other => plain(other),
    }
}

/// A place or state word from the API (`onsite_shelf`) for people (`onsite shelf`).
fn spaced(v: &Value) -> String {
    match v {
        Value::String(s) => volume_state(s).replace('_', " "),
        Value::Null => "nothing".into(),
        other => other.to_string(),
    }
}

/// An audit row's details in words (never raw JSON): one renderer per action, the rest as
/// "key: value" pairs.
pub(crate) fn audit_detail(action: &str, object: &str, detail: &str) -> String {
    let d: Value = match serde_json::from_str(detail) {
        Ok(v) => v,
        Err(_) => return detail.to_string(),
    };
    if let Some(words) = lifecycle::detail(action, &d) {
        return words;
    }
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match action {
        "login" => {
            let at = s("address");
            let from = if at.is_empty() {
                String::new()
            } else {
                format!(" from {at}")
            };
            if d["ok"] == Value::Bool(false) {
                format!("wrong password{from}")
            } else {
                format!("logged in{from}")
            }
        }
        "logout" => "logged out".into(),
        "user-create" if d["first_boot"] == Value::Bool(true) => {
            format!(
                "first administrator, made with the setup code from {}",
                s("address")
            )
        }
        "user-create" => format!("new account with the role {}", s("role")),
        "setting-change" => {
            let when = if s("applies") == "now" {
                "in use at once"
            } else {
                "in use after the next start"
            };
            format!(
                "{object} changed from {} to {} ({when})",
                or_none(&s("old")),
                or_none(&s("new"))
            )
        }
        "restart" => "restart of the box asked from the panel".into(),
        "volume-location" if d["from"].is_null() => format!("first seen {}", spaced(&d["to"])),
        "volume-location" | "volume-state" => {
            let mut out = format!("moved from {} to {}", spaced(&d["from"]), spaced(&d["to"]));
            if action == "volume-state" {
                let name = d["name"]
                    .as_str()
                    .map(|n| format!("{n}: "))
                    .unwrap_or_default();
                out = format!(
                    "{name}now {} (was {})",
                    spaced(&d["to"]),
                    spaced(&d["from"])
                );
                if let Some(w) = d["why"].as_str().filter(|w| !w.is_empty()) {
                    out.push_str(&format!(": {}", plain(w)));
                }
            }
            out
        }
        "bundle" => {
            let n = d["verified_copies"].as_i64().unwrap_or(0);
            let v = s("volume");
            match s("state").as_str() {
                "verified" => format!("{} copied to {v} and checked", images(n.max(0) as u64)),
                st => format!("copy to {v}: {}", plain(st)),
            }
        }
        "alarm-silence" => "alarm silenced".into(),
        "alarm-raise" => {
            let m = s("message");
            if m.is_empty() {
                "alarm raised".into()
            } else {
                format!("alarm: {}", without_device_names(&m))
            }
        }
        "archive-target" => format!(
            "{} drive {}",
            medium(&s("kind")),
            if s("change").is_empty() {
                "changed".into()
            } else {
                s("change")
            }
        ),
        "association" => {
            let from = s("peer");
            if from.is_empty() {
                "a device connected".into()
            } else {
                format!("a device connected from {from}")
            }
        }
        "store" => {
            let size = d["size"]
                .as_u64()
                .map(|b| format!(" ({})", cairn_core::human_bytes(b)))
                .unwrap_or_default();
            match s("outcome").as_str() {
                "stored" | "" => format!("image received and stored{size}"),
                other => format!("image received: {}{size}", plain(other)),
            }
        }
        "raid-event" => {
            let bay = d["bay"].as_u64().map(|b| format!("bay {b}"));
            let in_bay = bay.as_ref().map(|b| format!(" in {b}")).unwrap_or_default();
            match s("kind").as_str() {
                "disk-failed" => format!("the disk{in_bay} failed"),
                "disk-added" => format!("a disk{in_bay} joined the disks"),
                "disk-removed" => format!("the disk{in_bay} was taken out"),
                "rebuild-started" => "rebuild of the disks started".into(),
                "rebuild-finished" => "rebuild of the disks finished".into(),
                "health-changed" => format!(
                    "the disks went from {} to {}",
                    spaced(&d["from"]),
                    spaced(&d["to"])
                ),
                _ => without_device_names(&pairs(&d)),
            }
        }
        "raid-action" => {
            let a = &d["action"];
            let what = match (a["action"].as_str(), a["value"].as_str()) {
                (Some("add"), _) => match a["bay"].as_u64() {
                    Some(b) => format!("the disk in bay {b} added to the disks"),
                    None => "a disk added to the disks".into(),
                },
                (Some("set-state"), Some("remove")) => "a failed disk taken out".into(),
                (Some(x), _) => x.replace('-', " "),
                (None, _) => "disk action".into(),
            };
            if d["ok"] == Value::Bool(false) {
                format!("{what}: failed ({})", without_device_names(&s("error")))
            } else {
                what
            }
        }
        "alarm-clear" => "alarm cleared: the cause is fixed".into(),
        _ => pairs(&d),
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(empty)"
    } else {
        s
    }
}

/// `{"a_b": 1, "c": "x_y"}` as `a b: 1; c: x y`.
fn pairs(d: &Value) -> String {
    match d {
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Array(a) => a.iter().map(spaced).collect::<Vec<_>>().join(", "),
                    Value::Object(_) => pairs(v),
                    v => spaced(v),
                };
                format!("{}: {v}", k.replace('_', " "))
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        v => spaced(v),
    }
}

/// An RFC 3339 UTC time (`2026-01-31T23:10:05.123Z`) in the time zone `tz` as
/// `2026-02-01 00:10:05`; the text as it is when it is not such a time.
pub(crate) fn local_time(at: &str, tz: &jiff::tz::TimeZone) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => at.get(0..19).unwrap_or(at).replace('T', " "),
    }
}

/// The instant a day (`2026-01-31`) starts in `tz`, `days_after` days later, as the audit
/// table writes its UTC times (`2026-01-30T23:00:00`); none for a day that is not one.
pub(crate) fn utc_start_of_day(
    day: &str,
    tz: &jiff::tz::TimeZone,
    days_after: i64,
) -> Option<String> {
    let mut d: jiff::civil::Date = day.parse().ok()?;
    for _ in 0..days_after {
        d = d.tomorrow().ok()?;
    }
    let z = d.to_zoned_datetime(tz.clone()).ok()?;
    Some(z.timestamp().strftime("%Y-%m-%dT%H:%M:%S").to_string())
}

/// A monitor message for people: the array's device name (`md0`) is "the disks", and a
/// trailing "(md0)" goes ("The disk in bay 3 failed (md0)" -> "The disk in bay 3 failed").
pub(crate) fn without_device_names(msg: &str) -> String {
    let b = msg.as_bytes();
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let digits = b[i..]
            .iter()
            .skip(2)
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = i + 2 + digits;
        let after_ok = end >= b.len() || !b[end].is_ascii_alphanumeric();
        if boundary && b[i..].starts_with(b"md") && digits > 0 && after_ok {
            if out.ends_with(" (") && b.get(end) == Some(&b')') {
                out.truncate(out.len() - 2);
                i = end + 1;
            } else {
                out.push_str("the disks");
                i = end;
            }
            continue;
        }
        let ch = msg[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    let out = out
        .replace("the disks has ", "the disks have ")
        .replace("the disks is ", "the disks are ");
    match out.strip_prefix("the disks") {
        Some(rest) => format!("The disks{rest}"),
        None => out,
    }
}

/// The time zone of a name from the settings (UTC when it is unknown).
pub(crate) fn time_zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_in_staff_words() {
        let w = archive_activity("writing bundle DEMO01.3 (3 objects)", "tape", 3);
        assert_eq!(w, "Writing 3 images to the tape.");
        assert!(archive_busy("verifying bundle DEMO01.3"));
        assert!(!archive_busy("collecting (2 queued)"));
        assert_eq!(
            archive_activity("collecting (1 queued)", "optical", 1),
            "Gathering images to copy: 1 image waiting."
        );
        assert_eq!(
            archive_activity("collecting (1 queued)", "tape", 0),
            "Nothing to write now."
        );
        assert_eq!(
            archive_message("bundle X.2 verified (2 objects)", "optical"),
            "2 images written to the disc and checked."
        );
        assert_eq!(volume_state("append"), "in use");
        assert_eq!(
            archive_message("volume DISC01 (append)", "optical"),
            "volume DISC01 (in use)"
        );
    }

    #[test]
    fn audit_rows_in_words() {
        assert_eq!(
            audit_detail(
                "volume-location",
                "T1",
                r#"{"from":"in_drive","to":"onsite_shelf"}"#
            ),
            "moved from in drive to onsite shelf"
        );
        assert_eq!(
            audit_detail(
                "volume-state",
                "T1",
                r#"{"from":"append","to":"ejected","why":"ejected"}"#
            ),
            "now taken out (was in use): ejected"
        );
        assert_eq!(
            audit_detail("login", "user:a", r#"{"ok":false,"address":"10.0.0.2"}"#),
            "wrong password from 10.0.0.2"
        );
        assert_eq!(
            audit_detail("archive-scan", "", r#"{"peer":"CT1","stored_count":3}"#),
            "peer: CT1; stored count: 3"
        );
        assert_eq!(audit_detail("x", "", "not json"), "not json");
        assert_eq!(
            audit_detail(
                "raid-event",
                "md0",
                r#"{"array":"md0","bay":3,"device":"sdc","kind":"disk-failed"}"#
            ),
            "the disk in bay 3 failed"
        );
        assert_eq!(
            audit_detail(
                "alarm-raise",
                "md0",
                r#"{"bay":3,"id":1,"kind":"disk-failed","message":"The disk in bay 3 failed (md0)"}"#
            ),
            "alarm: The disk in bay 3 failed"
        );
        assert_eq!(
            audit_detail(
                "volume-state",
                "T",
                r#"{"from":"blank","kind":"tape","name":"DEMO01","to":"labelled"}"#
            ),
            "DEMO01: now ready, empty (was blank)"
        );
        assert_eq!(
            audit_detail("volume-location", "T", r#"{"from":null,"to":"in_drive"}"#),
            "first seen in drive"
        );
        assert_eq!(
            audit_detail(
                "store",
                "1.2",
                r#"{"outcome":"stored","sha256":"ab","size":39078,"study":"1.2.3"}"#
            ),
            "image received and stored (39.1 kB)"
        );
    }

    #[test]
    fn no_device_names() {
        assert_eq!(
            without_device_names("The disk in bay 3 failed (md0)"),
            "The disk in bay 3 failed"
        );
        assert_eq!(
            without_device_names("md0 has no redundancy left: one more failure loses data"),
            "The disks have no redundancy left: one more failure loses data"
        );
        assert_eq!(
            without_device_names("cmd0 and md and mdx é"),
            "cmd0 and md and mdx é"
        );
    }

    #[test]
    fn local_times() {
        let paris = time_zone("Europe/Paris");
        assert_eq!(
            local_time("2026-01-31T23:10:05Z", &paris),
            "2026-02-01 00:10:05"
        );
        assert_eq!(
            local_time("2026-07-01T10:00:00.5Z", &paris),
            "2026-07-01 12:00:00"
        );
        assert_eq!(local_time("garbage", &paris), "garbage");
        assert_eq!(time_zone("Nowhere/Else"), jiff::tz::TimeZone::UTC);
        assert_eq!(
            utc_start_of_day("2026-02-01", &paris, 0).as_deref(),
            Some("2026-01-31T23:00:00")
        );
        assert_eq!(
            utc_start_of_day("2026-07-01", &paris, 1).as_deref(),
            Some("2026-07-01T22:00:00")
        );
        assert_eq!(utc_start_of_day("2026-02-30", &paris, 0), None);
    }
}
