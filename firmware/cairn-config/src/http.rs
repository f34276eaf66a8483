//! `[http]`: the web panel's listener, sessions, TLS files, connection limits and time zone.

use crate::dicom::default_bind;
use crate::error::ConfigError;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

fn default_http_port() -> u16 {
    8080
}

impl HttpConfig {
    /// The first value of `[http]` out of its range, if any.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::invalid(path, key, message);
        if !(60..=86_400).contains(&self.session_idle_secs) {
            return Err(invalid("http.session_idle_secs", "must be 60 to 86400"));
        }
        if !valid_time_zone(&self.time_zone) {
            return Err(invalid(
                "http.time_zone",
                "must be a time zone name such as UTC or Europe/Paris",
            ));
        }
        let h = self;
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
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "http.tls_cert",
                "tls_cert and tls_key go together: give both or neither",
            ));
        }
        Ok(())
    }
}
