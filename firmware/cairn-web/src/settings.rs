//! The Settings page's data: read from `cairn.toml`, and changed by editing that file in place
//! (comments and unknown-to-the-panel keys kept, via `toml_edit`). A change is validated by
//! `cairn-config` exactly as a start would, then written atomically (temp, fsync, rename). Most
//! keys take effect at the next start of `cairnd` ([`applies_at_once`] tells the others: the
//! panel reads them from the file each time).

use crate::WebError;
use cairn_config::Config;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What changed: (key, old value, new value).
pub type Changes = Vec<(String, String, String)>;

/// A peer as the Settings page shows and edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSetting {
    /// AE title.
    pub ae: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// May store.
    #[serde(default)]
    pub store: bool,
    /// May query.
    #[serde(default)]
    pub query: bool,
    /// May retrieve.
    #[serde(default)]
    pub retrieve: bool,
}

/// The settings the panel shows.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Our AE title.
    pub ae_title: String,
    /// DICOM port.
    pub dicom_port: u16,
    /// Accept unknown calling AEs.
    pub accept_unknown_peers: bool,
    /// Known peers.
    pub peers: Vec<PeerSetting>,
    /// Days between RAID scrubs (0: off).
    pub scrub_interval_days: u32,
    /// Longest wait before waiting images are written to the archive, seconds.
    pub archive_max_age_secs: u64,
    /// Panel idle logout, seconds.
    pub session_idle_secs: u64,
    /// The time zone the panel shows times in (`http.time_zone`).
    pub time_zone: String,
    /// Whether the panel may change them (a config file is known and writable).
    pub editable: bool,
}

/// A change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// New AE title.
    #[serde(default)]
    pub ae_title: Option<String>,
    /// Accept unknown calling AEs.
    #[serde(default)]
    pub accept_unknown_peers: Option<bool>,
    /// The complete new peer list.
    #[serde(default)]
    pub peers: Option<Vec<PeerSetting>>,
    /// Days between scrubs.
    #[serde(default)]
    pub scrub_interval_days: Option<u32>,
    /// Longest wait before waiting images are written to the archive, seconds.
    #[serde(default)]
    pub archive_max_age_secs: Option<u64>,
    /// Panel idle logout, seconds.
    #[serde(default)]
    pub session_idle_secs: Option<u64>,
    /// The panel's time zone (an IANA name such as `Europe/Paris`); applies at once.
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Whether a changed key (as in [`Changes`]) is in use at once, without a restart.
pub fn applies_at_once(key: &str) -> bool {
    key == "http.time_zone"
}

/// The settings in a config.
pub fn view(c: &Config, editable: bool) -> Settings {
    Settings {
        ae_title: c.dicom.ae_title.to_string(),
        dicom_port: c.dicom.port,
        accept_unknown_peers: c.dicom.accept_unknown_peers,
        peers: c
            .dicom
            .peers
            .iter()
            .map(|p| PeerSetting {
                ae: p.ae.to_string(),
                host: p.host.clone(),
                port: p.port,
                store: p.store,
                query: p.query,
                retrieve: p.retrieve,
            })
            .collect(),
        scrub_interval_days: c.hardware.scrub_interval_days.unwrap_or(30),
        archive_max_age_secs: c.archive.bundle_max_age_secs,
        session_idle_secs: c.http.session_idle_secs,
        time_zone: c.http.time_zone.clone(),
        editable,
    }
}

/// Load and show the settings of a config file.
pub fn load(path: &Path) -> Result<Settings, WebError> {
    let c = Config::load(path).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(view(&c, true))
}

fn bad(msg: impl Into<String>) -> WebError {
    WebError::BadRequest(msg.into())
}

/// Apply a change to the file text; returns the new text (validated) and what changed as
/// `(key, old, new)` for the audit row.
pub fn apply(text: &str, path: &Path, ch: &SettingsChange) -> Result<(String, Changes), WebError> {
    use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};
    let old = Config::parse(text, path).map_err(|e| WebError::Internal(e.to_string()))?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
    let mut changed = Vec::new();
    if let Some(ae) = &ch.ae_title {
        let ae = ae.trim();
        cairn_core::AeTitle::new(ae).map_err(|e| bad(format!("AE title: {e}")))?;
        if ae != old.dicom.ae_title.as_str() {
            doc["dicom"]["ae_title"] = value(ae);
            changed.push((
                "dicom.ae_title".into(),
                old.dicom.ae_title.to_string(),
                ae.to_string(),
            ));
        }
    }
    if let Some(a) = ch.accept_unknown_peers {
        if a != old.dicom.accept_unknown_peers {
            doc["dicom"]["accept_unknown_peers"] = value(a);
            changed.push((
                "dicom.accept_unknown_peers".into(),
                old.dicom.accept_unknown_peers.to_string(),
                a.to_string(),
            ));
        }
    }
    if let Some(peers) = &ch.peers {
        let mut aot = ArrayOfTables::new();
        for p in peers {
            cairn_core::AeTitle::new(p.ae.trim())
                .map_err(|e| bad(format!("peer AE title '{}': {e}", p.ae.trim())))?;
            let host = p.host.trim();
            if host.is_empty()
                || host.len() > 253
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
            {
                return Err(bad(format!(
                    "peer {}: the host must be a name or an address",
                    p.ae.trim()
                )));
            }
            if p.port == 0 {
                return Err(bad(format!(
                    "peer {}: port must be 1 to 65535",
                    p.ae.trim()
                )));
            }
            let mut t = Table::new();
            t["ae"] = value(p.ae.trim());
            t["host"] = value(host);
            t["port"] = value(i64::from(p.port));
            t["store"] = value(p.store);
            t["query"] = value(p.query);
            t["retrieve"] = value(p.retrieve);
            aot.push(t);
        }
        let before = view(&old, true).peers;
        if &before != peers {
            let dicom = doc["dicom"]
                .as_table_mut()
                .ok_or_else(|| WebError::Internal("[dicom] is not a table".into()))?;
            if aot.is_empty() {
                dicom.remove("peers");
            } else {
                dicom.insert("peers", Item::ArrayOfTables(aot));
            }
            let names = |v: &[PeerSetting]| {
                v.iter()
                    .map(|p| p.ae.trim().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            changed.push(("dicom.peers".into(), names(&before), names(peers)));
        }
    }
    if let Some(d) = ch.scrub_interval_days {
        if d > 365 {
            return Err(bad("scrub interval: 0 (off) to 365 days"));
        }
        let cur = old.hardware.scrub_interval_days.unwrap_or(30);
        if d != cur {
            if doc.get("hardware").is_none() {
                doc["hardware"] = Item::Table(Table::new());
            }
            doc["hardware"]["scrub_interval_days"] = value(i64::from(d));
            changed.push((
                "hardware.scrub_interval_days".into(),
                cur.to_string(),
                d.to_string(),
            ));
        }
    }
    if let Some(a) = ch.archive_max_age_secs {
        // TOML integers are signed 64-bit: a larger number would be written negative.
        if a == 0 || i64::try_from(a).is_err() {
            return Err(bad(format!(
                "the longest archive wait is 1 to {} seconds",
                i64::MAX
            )));
        }
        if a != old.archive.bundle_max_age_secs {
            if doc.get("archive").is_none() {
                doc["archive"] = Item::Table(Table::new());
            }
            doc["archive"]["bundle_max_age_secs"] = value(i64::try_from(a).unwrap_or(i64::MAX));
            changed.push((
                "archive.bundle_max_age_secs".into(),
                old.archive.bundle_max_age_secs.to_string(),
                a.to_string(),
            ));
        }
    }
    if let Some(s) = ch.session_idle_secs {
        if !(60..=86_400).contains(&s) {
            return Err(bad("log out after idle: 60 to 86400 seconds"));
        }
        if s != old.http.session_idle_secs {
            if doc.get("http").is_none() {
                doc["http"] = Item::Table(Table::new());
            }
            doc["http"]["session_idle_secs"] = value(i64::try_from(s).unwrap_or(i64::MAX));
            changed.push((
                "http.session_idle_secs".into(),
                old.http.session_idle_secs.to_string(),
                s.to_string(),
            ));
        }
    }
    if let Some(tz) = &ch.time_zone {
        let tz = tz.trim();
        if !cairn_config::valid_time_zone(tz) {
            return Err(bad(format!(
                "time zone '{tz}': use a name such as UTC, Europe/Paris or America/New_York"
            )));
        }
        if tz != old.http.time_zone {
            if doc.get("http").is_none() {
                doc["http"] = Item::Table(Table::new());
            }
            doc["http"]["time_zone"] = value(tz);
            changed.push((
                "http.time_zone".into(),
                old.http.time_zone.clone(),
                tz.to_string(),
            ));
        }
    }
    let out = doc.to_string();
    Config::parse(&out, path).map_err(refusal)?;
    Ok((out, changed))
}

/// A configuration the change would make invalid, told without the file's path (the key and
/// why, or a general sentence; the parser's own words go to the log).
fn refusal(e: cairn_config::ConfigError) -> WebError {
    match e {
        cairn_config::ConfigError::Invalid { key, message, .. } => bad(format!("{key}: {message}")),
        e => {
            tracing::warn!(error = %e, "a settings change would not make a valid configuration");
            bad("the change would not make a valid configuration")
        }
    }
}

/// Change the config file; returns what changed.
pub fn change(path: &Path, ch: &SettingsChange) -> Result<Changes, WebError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
    let (out, changed) = apply(&text, path, ch)?;
    if changed.is_empty() {
        return Ok(changed);
    }
    // Synced: an acknowledged settings change must survive a crash.
    cairn_files::atomic_write(path, out.as_bytes(), cairn_files::Durability::Synced)
        .map_err(|e| WebError::Internal(format!("{}: {e}", path.display())))?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        cairn_config::default_toml(&cairn_config::Defaults {
            bind: [127, 0, 0, 1].into(),
            dicom_port: 11112,
            http_port: 8080,
            data_dir: "/tmp/x".into(),
            accept_unknown_peers: true,
        })
    }

    #[test]
    fn edits_keep_comments_and_validate() {
        let p = Path::new("cairn.toml");
        let ch = SettingsChange {
            ae_title: Some("NEWAE".into()),
            peers: Some(vec![PeerSetting {
                ae: "CT1".into(),
                host: "10.0.0.5".into(),
                port: 104,
                store: true,
                query: false,
                retrieve: false,
            }]),
            scrub_interval_days: Some(14),
            archive_max_age_secs: Some(3600),
            ..Default::default()
        };
        let (out, changed) = apply(&text(), p, &ch).unwrap();
        assert_eq!(changed.len(), 4, "{changed:?}");
        assert!(out.contains("# The AE title other devices must call"));
        let c = Config::parse(&out, p).unwrap();
        assert_eq!(c.dicom.ae_title.as_str(), "NEWAE");
        assert_eq!(c.dicom.peers.len(), 1);
        assert_eq!(c.hardware.scrub_interval_days, Some(14));
        assert_eq!(c.archive.bundle_max_age_secs, 3600);
        let zero = SettingsChange {
            archive_max_age_secs: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            apply(&text(), p, &zero),
            Err(WebError::BadRequest(_))
        ));

        let bad_ae = SettingsChange {
            ae_title: Some("THIS IS FAR TOO LONG FOR AN AE".into()),
            ..Default::default()
        };
        assert!(matches!(
            apply(&text(), p, &bad_ae),
            Err(WebError::BadRequest(_))
        ));
        let bad_idle = SettingsChange {
            session_idle_secs: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            apply(&text(), p, &bad_idle),
            Err(WebError::BadRequest(_))
        ));
    }
}
