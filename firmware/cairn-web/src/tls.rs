//! HTTPS: the device certificate made at first start (rcgen, ECDSA P-256, self-signed, valid
//! for the box's names) and the rustls configuration (ring provider) that [`crate::listen`]
//! accepts connections with.

use crate::WebError;
use cairn_files::{atomic_write_with_mode, Durability};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Make a self-signed device certificate and key at these paths unless both exist. The key
/// file is written mode 0600; both are written to a temporary name, fsynced, then renamed.
/// Returns true when it made them.
pub fn ensure_device_cert(cert: &Path, key: &Path, names: &[String]) -> Result<bool, WebError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| WebError::Internal(format!("certificate names: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cairn device certificate");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 30);
    let kp =
        rcgen::KeyPair::generate().map_err(|e| WebError::Internal(format!("device key: {e}")))?;
    let c = params
        .self_signed(&kp)
        .map_err(|e| WebError::Internal(format!("device certificate: {e}")))?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    // Synced: the key and certificate the panel serves must survive a crash together.
    atomic_write_with_mode(
        key,
        kp.serialize_pem().as_bytes(),
        0o600,
        Durability::Synced,
    )
    .map_err(|e| io(key, e))?;
    atomic_write_with_mode(cert, c.pem().as_bytes(), 0o644, Durability::Synced)
        .map_err(|e| io(cert, e))?;
    Ok(true)
}

fn io(p: &Path, e: std::io::Error) -> WebError {
    WebError::Internal(format!("{}: {e}", p.display()))
}

/// A rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| WebError::Internal(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| WebError::Internal(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| WebError::Internal(format!("{}: {e}", key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WebError::Internal(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| WebError::Internal(format!("TLS certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_loadable_certificate_once() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("tls/cert.pem"), d.path().join("tls/key.pem"));
        assert!(ensure_device_cert(&c, &k, &["cairn.local".into(), "127.0.0.1".into()]).unwrap());
        let first = std::fs::read(&c).unwrap();
        assert!(!ensure_device_cert(&c, &k, &["x".into()]).unwrap());
        assert_eq!(std::fs::read(&c).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(&c, &k).unwrap();
    }
}
