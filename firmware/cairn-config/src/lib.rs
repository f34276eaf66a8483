//! cairn's configuration file: TOML, validated on load, unknown keys rejected.
//!
//! Owns: the schema of `cairn.toml` and the commented default written on first demo run.
//! Must never: touch hardware or the store; a config error names the key and the problem.

use cairn_core::AeTitle;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A configuration problem, naming the file and what is wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and key.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DICOM node.
    pub dicom: DicomConfig,
    /// The hot store.
    pub store: StoreConfig,
    /// The web panel.
    #[serde(default)]
    pub http: HttpConfig,
    /// The hardware: board file, RAID monitor, alarm. Optional.
    #[serde(default)]
    pub hardware: HardwareConfig,
    /// The archive: cold targets (tape, optical) and when bundles close. Optional.
    #[serde(default)]
    pub archive: ArchiveConfig,
}

/// `[archive]`: the air-gapped copy (issue 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// This box's id, written into every volume label (1 to 16 of `A-Z 0-9 -`).
    #[serde(default = "default_box_id")]
    pub box_id: String,
    /// A bundle closes once this many bytes are queued (at least 1 MiB).
    #[serde(default = "default_bundle_max_bytes")]
    pub bundle_max_bytes: u64,
    /// A bundle closes once its oldest image has waited this long (seconds, at least 1).
    #[serde(default = "default_bundle_max_age")]
    pub bundle_max_age_secs: u64,
    /// At most this many images per bundle.
    #[serde(default = "default_bundle_max_members")]
    pub bundle_max_members: usize,
    /// A new tape or disc whose printed name the drive cannot read is named by the box with
    /// this prefix and the next free number (`CAIRN01`); 1 to 12 of `A-Z 0-9`.
    #[serde(default = "default_volume_name_prefix")]
    pub volume_name_prefix: String,
    /// The cold targets; every stored image is queued for each.
    #[serde(default)]
    pub targets: Vec<ColdTarget>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            box_id: default_box_id(),
            bundle_max_bytes: default_bundle_max_bytes(),
            bundle_max_age_secs: default_bundle_max_age(),
            bundle_max_members: default_bundle_max_members(),
            volume_name_prefix: default_volume_name_prefix(),
            targets: Vec::new(),
        }
    }
}

/// What kind of medium a cold target writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdKind {
    /// LTO tape through the st driver (or the tape emulator).
    Tape,
    /// Optical disc through xorriso (or the disc emulator).
    Optical,
}

impl ColdKind {
    /// `tape` or `optical`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdKind::Tape => "tape",
            ColdKind::Optical => "optical",
        }
    }
}

/// `[[archive.targets]]`: one drive that receives a copy of every image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdTarget {
    /// Its name (1 to 32 of `A-Z a-z 0-9 _ -`), unique.
    pub name: String,
    /// `tape` or `optical`.
    pub kind: ColdKind,
    /// The real drive: the st non-rewinding device (`/dev/nst0`) or the burner (`/dev/sr0`).
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// Instead of `device`: an emulator directory (tape drive directory, or disc tray
    /// directory whose discs are `stdio:` image files).
    #[serde(default)]
    pub emulator: Option<PathBuf>,
    /// Optical emulator only: capacity of a new blank disc image in bytes.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
}

fn default_box_id() -> String {
    "CAIRN".into()
}
fn default_bundle_max_bytes() -> u64 {
    4 << 30
}
fn default_bundle_max_age() -> u64 {
    3600
}
fn default_bundle_max_members() -> usize {
    50_000
}
fn default_volume_name_prefix() -> String {
    "CAIRN".into()
}

/// `[hardware]`: which board this is and where the RAID monitor and alarm look.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// The board file (`board/<name>/board.toml`); without it the RAID monitor and the alarm
    /// do not run.
    #[serde(default)]
    pub board: Option<PathBuf>,
    /// Root under which `sys/` and `dev/` are read (default `/`).
    #[serde(default)]
    pub sysfs_root: Option<PathBuf>,
    /// The alarm's latched state file (default `<data_dir>/alarm.json`).
    #[serde(default)]
    pub alarm_state: Option<PathBuf>,
    /// Days between scheduled scrubs (`sync_action=check`); 0 turns them off (default 30).
    #[serde(default)]
    pub scrub_interval_days: Option<u32>,
}

/// `[dicom]`: the DICOM node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Our AE title.
    pub ae_title: AeTitle,
    /// Listen address.
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    /// Listen port.
    #[serde(default = "default_dicom_port")]
    pub port: u16,
    /// Accept calling AEs that are not in `peers`.
    #[serde(default)]
    pub accept_unknown_peers: bool,
    /// Concurrent associations before refusing with temporary congestion.
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// Largest PDU we accept.
    #[serde(default = "default_max_pdu")]
    pub max_pdu_bytes: u32,
    /// Seconds allowed for the association request or the rest of a started PDU.
    #[serde(default = "default_artim")]
    pub artim_timeout_secs: u64,
    /// Seconds of silence before an association is aborted.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// At most this many associations from one IP address at once (and at most this many of
    /// its connections waiting to send their association request).
    #[serde(default = "default_max_per_peer")]
    pub max_associations_per_address: usize,
    /// At most this many associations with one calling AE title at once.
    #[serde(default = "default_max_per_peer")]
    pub max_associations_per_ae: usize,
    /// Of `max_associations`, this many are kept for AE titles listed under `[[dicom.peers]]`
    /// (AEs let in by `accept_unknown_peers` cannot take them); at most `max_associations - 1`.
    #[serde(default = "default_reserved_for_peers")]
    pub reserved_associations_for_peers: usize,
    /// A message (C-STORE data set, identifier, command) must arrive at least this fast,
    /// measured over `transfer_rate_window_secs`; slower, the association is aborted. 0: off.
    #[serde(default = "default_min_transfer_rate")]
    pub min_transfer_bytes_per_sec: u64,
    /// The window over which `min_transfer_bytes_per_sec` is measured (1 to 3600 seconds).
    #[serde(default = "default_transfer_rate_window")]
    pub transfer_rate_window_secs: u64,
    /// Largest single object accepted.
    #[serde(default = "default_max_object")]
    pub max_object_bytes: u64,
    /// At most this many C-FIND answers, or instances in one C-MOVE/C-GET.
    #[serde(default = "default_max_query_results")]
    pub max_query_results: usize,
    /// Seconds a storage commitment request waits for its instances to get a verified cold
    /// copy before the unverified ones are reported as failed.
    #[serde(default = "default_commitment_timeout")]
    pub commitment_timeout_secs: u64,
    /// Known remote AEs and their rights.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// `[[dicom.peers]]`: a remote AE and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its AE title.
    pub ae: AeTitle,
    /// Its host name or address (used when the box connects to it).
    pub host: String,
    /// Its DICOM port.
    pub port: u16,
    /// May send images here (C-STORE).
    #[serde(default)]
    pub store: bool,
    /// May query (C-FIND).
    #[serde(default)]
    pub query: bool,
    /// May retrieve (C-MOVE, C-GET).
    #[serde(default)]
    pub retrieve: bool,
}

/// `[store]`: where the hot store lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory (objects, index, spool).
    pub data_dir: PathBuf,
}

/// `[http]`: the web panel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    /// Listen port.
    #[serde(default = "default_http_port")]
    pub port: u16,
    /// A panel session unused for this long ends (seconds, 60 to 86400; default 900).
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: u64,
    /// The HTTPS certificate (PEM); default `<data_dir>/tls/cert.pem`, made at first start.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM); default `<data_dir>/tls/key.pem`, made at first start.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Panel connections open at once, in all (1 to 65536; default 256). `cairnd` lowers it
    /// when its descriptor limit would otherwise let the panel take what the DICOM node, the
    /// monitor and the archive need.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// Panel connections open at once from one address (1 to `max_connections`; default 32).
    #[serde(default = "default_http_max_per_address")]
    pub max_connections_per_address: usize,
    /// A request's head (and a TLS handshake) must arrive within this many seconds of the
    /// connection opening or of the previous answer (1 to 300; default 10).
    #[serde(default = "default_http_header_timeout")]
    pub header_timeout_secs: u64,
    /// A connection that moves no bytes for this many seconds while the panel waits on the
    /// client (a request, the rest of its body, taking the answer) is closed (1 to 3600;
    /// default 60).
    #[serde(default = "default_http_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// The time zone the panel shows times in (an IANA name such as `Europe/Paris`; default
    /// `UTC`). The database is compiled in; the box's own clock stays UTC.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            port: default_http_port(),
            session_idle_secs: default_session_idle(),
            tls_cert: None,
            tls_key: None,
            max_connections: default_http_max_connections(),
            max_connections_per_address: default_http_max_per_address(),
            header_timeout_secs: default_http_header_timeout(),
            idle_timeout_secs: default_http_idle_timeout(),
            time_zone: default_time_zone(),
        }
    }
}

fn default_session_idle() -> u64 {
    900
}

fn default_http_max_connections() -> usize {
    256
}

fn default_http_max_per_address() -> usize {
    32
}

fn default_http_header_timeout() -> u64 {
    10
}

fn default_http_idle_timeout() -> u64 {
    60
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// Whether `name` is a time zone of the compiled-in database (`UTC`, `Europe/Paris`...).
pub fn valid_time_zone(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && jiff::tz::TimeZone::get(name).is_ok()
}

fn default_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_dicom_port() -> u16 {
    11112
}
fn default_http_port() -> u16 {
    8080
}
fn default_max_associations() -> usize {
    16
}
fn default_max_pdu() -> u32 {
    65536
}
fn default_artim() -> u64 {
    30
}
fn default_idle() -> u64 {
    60
}
fn default_max_per_peer() -> usize {
    8
}
fn default_reserved_for_peers() -> usize {
    2
}
fn default_min_transfer_rate() -> u64 {
    1024
}
fn default_transfer_rate_window() -> u64 {
    10
}
fn default_commitment_timeout() -> u64 {
    86_400
}

fn default_max_query_results() -> usize {
    10_000
}
fn default_max_object() -> u64 {
    4 << 30
}

/// Values that fill the shipped default config.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Listen address for DICOM and HTTP.
    pub bind: IpAddr,
    /// DICOM port.
    pub dicom_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Accept unknown calling AEs.
    pub accept_unknown_peers: bool,
}

/// The complete commented default configuration, filled in.
pub fn default_toml(d: &Defaults) -> String {
    let data_dir = d.data_dir.display().to_string();
    // TOML basic string escaping for the path.
    let data_dir = data_dir.replace('\\', "\\\\").replace('"', "\\\"");
    include_str!("default.toml")
        .replace("@BIND@", &d.bind.to_string())
        .replace("@DICOM_PORT@", &d.dicom_port.to_string())
        .replace("@HTTP_PORT@", &d.http_port.to_string())
        .replace("@DATA_DIR@", &data_dir)
        .replace("@ACCEPT_UNKNOWN@", &d.accept_unknown_peers.to_string())
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message: message.to_string(),
        };
        let d = &self.dicom;
        if !(16_384..=4_194_304).contains(&d.max_pdu_bytes) {
            return Err(invalid("dicom.max_pdu_bytes", "must be 16384 to 4194304"));
        }
        if d.max_associations == 0 || d.max_associations > 1024 {
            return Err(invalid("dicom.max_associations", "must be 1 to 1024"));
        }
        if d.artim_timeout_secs == 0 || d.idle_timeout_secs == 0 {
            return Err(invalid("dicom.*_timeout_secs", "must be at least 1 second"));
        }
        if d.max_associations_per_address == 0 || d.max_associations_per_ae == 0 {
            return Err(invalid(
                "dicom.max_associations_per_*",
                "must be at least 1",
            ));
        }
        if !(1..=3600).contains(&d.transfer_rate_window_secs) {
            return Err(invalid(
                "dicom.transfer_rate_window_secs",
                "must be 1 to 3600",
            ));
        }
        if d.max_query_results == 0 {
            return Err(invalid("dicom.max_query_results", "must be at least 1"));
        }
        if d.max_object_bytes < 1024 {
            return Err(invalid("dicom.max_object_bytes", "must be at least 1024"));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &d.peers {
            if !seen.insert(p.ae.clone()) {
                return Err(invalid(
                    "dicom.peers.ae",
                    "the same AE title is listed twice",
                ));
            }
        }
        if !(60..=86_400).contains(&self.http.session_idle_secs) {
            return Err(invalid("http.session_idle_secs", "must be 60 to 86400"));
        }
        if !valid_time_zone(&self.http.time_zone) {
            return Err(invalid(
                "http.time_zone",
                "must be a time zone name such as UTC or Europe/Paris",
            ));
        }
        let h = &self.http;
        if !(1..=65_536).contains(&h.max_connections) {
            return Err(invalid("http.max_connections", "must be 1 to 65536"));
        }
        if !(1..=h.max_connections).contains(&h.max_connections_per_address) {
            return Err(invalid(
                "http.max_connections_per_address",
                "must be 1 to max_connections",
            ));
        }
        if !(1..=300).contains(&h.header_timeout_secs) {
            return Err(invalid("http.header_timeout_secs", "must be 1 to 300"));
        }
        if !(1..=3600).contains(&h.idle_timeout_secs) {
            return Err(invalid("http.idle_timeout_secs", "must be 1 to 3600"));
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(invalid(
                "http.tls_cert",
                "tls_cert and tls_key go together: give both or neither",
            ));
        }
        let a = &self.archive;
        if a.box_id.is_empty()
            || a.box_id.len() > 16
            || !a
                .box_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("archive.box_id", "must be 1 to 16 of A-Z 0-9 -"));
        }
        if a.bundle_max_bytes < 1 << 20 {
            return Err(invalid(
                "archive.bundle_max_bytes",
                "must be at least 1048576",
            ));
        }
        if a.bundle_max_age_secs == 0 {
            return Err(invalid("archive.bundle_max_age_secs", "must be at least 1"));
        }
        if a.bundle_max_members == 0 {
            return Err(invalid("archive.bundle_max_members", "must be at least 1"));
        }
        if a.volume_name_prefix.is_empty()
            || a.volume_name_prefix.len() > 12
            || !a
                .volume_name_prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(invalid(
                "archive.volume_name_prefix",
                "must be 1 to 12 of A-Z 0-9",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &a.targets {
            if t.name.is_empty()
                || t.name.len() > 32
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "archive.targets.name",
                    "must be 1 to 32 of A-Z a-z 0-9 _ -",
                ));
            }
            if !names.insert(t.name.clone()) {
                return Err(invalid(
                    "archive.targets.name",
                    "the same name is used twice",
                ));
            }
            if t.device.is_some() == t.emulator.is_some() {
                return Err(invalid(
                    "archive.targets",
                    "each target needs exactly one of device or emulator",
                ));
            }
            if t.capacity_bytes.is_some() && !(t.kind == ColdKind::Optical && t.emulator.is_some())
            {
                return Err(invalid(
                    "archive.targets.capacity_bytes",
                    "only for an optical emulator",
                ));
            }
        }
        if self.store.data_dir.as_os_str().is_empty() {
            return Err(invalid("store.data_dir", "must not be empty"));
        }
        Ok(())
    }

    /// The peer with this AE title, if configured.
    pub fn peer(&self, ae: &str) -> Option<&Peer> {
        self.dicom.peers.iter().find(|p| p.ae.as_str() == ae)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            bind: "127.0.0.1".parse().unwrap(),
            dicom_port: 11112,
            http_port: 8080,
            data_dir: "/tmp/x \"y\"".into(),
            accept_unknown_peers: true,
        }
    }

    #[test]
    fn shipped_default_parses() {
        let c = Config::parse(&default_toml(&defaults()), Path::new("t")).unwrap();
        assert_eq!(c.dicom.ae_title.as_str(), "CAIRN");
        assert!(c.dicom.accept_unknown_peers);
        assert_eq!(c.store.data_dir, PathBuf::from("/tmp/x \"y\""));
        assert_eq!(c.dicom.max_object_bytes, 4 << 30);
    }

    #[test]
    fn dicom_lockout_limits_default_and_check() {
        // the shipped file and the built-in defaults agree, and no peer may take every slot
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n";
        let built_in = Config::parse(base, Path::new("t")).unwrap().dicom;
        let shipped = Config::parse(&default_toml(&defaults()), Path::new("t"))
            .unwrap()
            .dicom;
        for d in [&built_in, &shipped] {
            assert!(
                d.idle_timeout_secs <= 60,
                "idle timeout {}",
                d.idle_timeout_secs
            );
            assert!(d.max_associations_per_address < d.max_associations);
            assert!(d.max_associations_per_ae < d.max_associations);
            assert!(d.reserved_associations_for_peers >= 1);
            assert!(d.min_transfer_bytes_per_sec > 0);
            assert_eq!(d.transfer_rate_window_secs, 10);
        }
        for bad in [
            "max_associations_per_address = 0",
            "max_associations_per_ae = 0",
            "transfer_rate_window_secs = 0",
            "transfer_rate_window_secs = 3601",
            "max_associations_per_adress = 2",
        ] {
            let text = base.replace("[store]", &format!("{bad}\n[store]"));
            assert!(Config::parse(&text, Path::new("t")).is_err(), "{bad}");
        }
    }

    #[test]
    fn panel_connection_limits_default_and_check() {
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n[http]\n";
        let built_in = Config::parse(base, Path::new("t")).unwrap().http;
        let shipped = Config::parse(&default_toml(&defaults()), Path::new("t"))
            .unwrap()
            .http;
        for h in [&built_in, &shipped] {
            assert_eq!(h.max_connections, 256);
            assert_eq!(h.max_connections_per_address, 32);
            assert_eq!(h.header_timeout_secs, 10);
            assert_eq!(h.idle_timeout_secs, 60);
        }
        for bad in [
            "max_connections = 0",
            "max_connections = 65537",
            "max_connections = 4\nmax_connections_per_address = 5",
            "max_connections_per_address = 0",
            "header_timeout_secs = 0",
            "header_timeout_secs = 301",
            "idle_timeout_secs = 0",
            "idle_timeout_secs = 3601",
        ] {
            let text = format!("{base}{bad}\n");
            assert!(Config::parse(&text, Path::new("t")).is_err(), "{bad}");
        }
    }

    #[test]
    fn panel_time_zone_is_a_known_zone() {
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n[http]\n";
        let c = Config::parse(base, Path::new("t")).unwrap();
        assert_eq!(c.http.time_zone, "UTC");
        let shipped = Config::parse(&default_toml(&defaults()), Path::new("t")).unwrap();
        assert_eq!(shipped.http.time_zone, "UTC");
        let paris = format!("{base}time_zone = \"Europe/Paris\"\n");
        assert_eq!(
            Config::parse(&paris, Path::new("t"))
                .unwrap()
                .http
                .time_zone,
            "Europe/Paris"
        );
        for bad in ["Mars/Olympus", "", "../../etc/passwd"] {
            let text = format!("{base}time_zone = \"{bad}\"\n");
            let e = Config::parse(&text, Path::new("t"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("http.time_zone"), "{e}");
        }
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = default_toml(&defaults()).replace("[store]", "[store]\ndata_dri = \"x\"");
        let e = Config::parse(&text, Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_dri"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        let text = default_toml(&defaults()).replace("max_pdu_bytes = 65536", "max_pdu_bytes = 10");
        assert!(Config::parse(&text, Path::new("t")).is_err());
        let text = default_toml(&defaults()).replace(
            "ae_title = \"CAIRN\"",
            "ae_title = \"WAY_TOO_LONG_AE_TITLE\"",
        );
        assert!(Config::parse(&text, Path::new("t")).is_err());
    }

    #[test]
    fn peers_parse() {
        let text = default_toml(&defaults())
            + "\n[[dicom.peers]]\nae = \"CT\"\nhost = \"10.0.0.2\"\nport = 104\nstore = true\n";
        // the appended block lands after [http]; TOML arrays of tables are fine there
        let c = Config::parse(&text, Path::new("t")).unwrap();
        let p = c.peer("CT").unwrap();
        assert!(p.store && !p.query && !p.retrieve);
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn archive_section_defaults_and_checks() {
        let d = default_toml(&Defaults {
            bind: "127.0.0.1".parse().unwrap(),
            dicom_port: 11112,
            http_port: 8080,
            data_dir: "/demo".into(),
            accept_unknown_peers: true,
        });
        let c = Config::parse(&d, Path::new("t")).unwrap();
        assert_eq!(
            c.archive.targets.len(),
            2,
            "the demo archives to tape and optical"
        );
        assert_eq!(c.archive.targets[0].kind, ColdKind::Tape);
        assert_eq!(
            c.archive.targets[0].emulator,
            Some(PathBuf::from("/demo/hw/tape"))
        );
        assert_eq!(c.archive.targets[1].kind, ColdKind::Optical);
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n";
        let c = Config::parse(base, Path::new("t")).unwrap();
        assert!(c.archive.targets.is_empty());
        for bad in [
            "[archive]\nbox_id = \"lower\"\n",
            "[archive]\nbundle_max_bytes = 5\n",
            "[[archive.targets]]\nname = \"t\"\nkind = \"tape\"\n",
            "[[archive.targets]]\nname = \"t\"\nkind = \"floppy\"\ndevice = \"/dev/fd0\"\n",
            "[[archive.targets]]\nname = \"t\"\nkind = \"tape\"\ndevice = \"/dev/nst0\"\ncapacity_bytes = 1\n",
            "[[archive.targets]]\nname = \"t\"\nkind = \"tape\"\ndevice = \"/a\"\n[[archive.targets]]\nname = \"t\"\nkind = \"tape\"\ndevice = \"/b\"\n",
            "[archive]\nbundel_max_bytes = 5000000\n",
            "[archive]\nvolume_name_prefix = \"cairn\"\n",
            "[archive]\nvolume_name_prefix = \"\"\n",
        ] {
            assert!(Config::parse(&format!("{base}{bad}"), Path::new("t")).is_err(), "{bad}");
        }
    }

    #[test]
    fn hardware_section_is_optional_and_strict() {
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n";
        let c = Config::parse(base, Path::new("t")).unwrap();
        assert!(c.hardware.board.is_none());
        let c = Config::parse(
            &format!("{base}[hardware]\nboard = \"/b.toml\"\nscrub_interval_days = 0\n"),
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(c.hardware.board, Some(PathBuf::from("/b.toml")));
        assert_eq!(c.hardware.scrub_interval_days, Some(0));
        assert!(Config::parse(&format!("{base}[hardware]\nbord = 1\n"), Path::new("t")).is_err());
    }

    #[test]
    fn rootfs_config_parses_and_is_strict() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rootfs/overlay/etc/cairn/cairn.toml");
        let c = Config::load(&path).unwrap();
        assert!(
            !c.dicom.accept_unknown_peers,
            "the appliance must not accept unknown peers"
        );
        assert_eq!(c.store.data_dir, PathBuf::from("/var/lib/cairn"));
    }
}
