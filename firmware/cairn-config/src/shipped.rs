//! The shipped files parse: the archive and hardware sections of the demo default, and the
//! appliance's own `cairn.toml`.

use super::*;
use std::path::PathBuf;

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

#[test]
fn shipped_files_keep_the_lifecycle_defaults() {
    let d = default_toml(&Defaults {
        bind: "127.0.0.1".parse().unwrap(),
        dicom_port: 11112,
        http_port: 8080,
        data_dir: "/demo".into(),
        accept_unknown_peers: true,
    });
    let demo = Config::parse(&d, Path::new("t")).unwrap();
    assert_eq!(demo.lifecycle, LifecycleConfig::default());
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rootfs/overlay/etc/cairn/cairn.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# [lifecycle]\n"),
        "the section is shown, commented"
    );
    let appliance = Config::parse(&text, &path).unwrap();
    assert_eq!(appliance.lifecycle, LifecycleConfig::default());
    let uncommented = text
        .replace("# [lifecycle]", "[lifecycle]")
        .replace("# retention = \"fr\"", "retention = \"fr\"");
    let c = Config::parse(&uncommented, &path).unwrap();
    assert_eq!(c.lifecycle, LifecycleConfig::default());
}
