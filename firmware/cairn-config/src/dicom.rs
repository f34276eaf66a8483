//! `[dicom]` and `[[dicom.peers]]`: the DICOM node, its limits and the remote AEs it knows.

use crate::error::ConfigError;
use cairn_core::AeTitle;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

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

impl DicomConfig {
    /// The first value of `[dicom]` out of its range, if any.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::invalid(path, key, message);
        let d = self;
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
        Ok(())
    }
}

/// The listen address both the DICOM node and the panel default to: every interface.
pub(crate) fn default_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_dicom_port() -> u16 {
    11112
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
