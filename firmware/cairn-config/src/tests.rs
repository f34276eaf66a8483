//! Parsing and checking of `cairn.toml`: defaults, limits, unknown keys, peers.

use super::*;
use std::path::PathBuf;

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
