//! Which configuration file `cairnctl` reads (`--config`, else `DIR/cairn.toml`, else the
//! appliance's `/etc/cairn/cairn.toml`, else none: the built-in defaults), and what the
//! lifecycle commands take from it. Errors are messages for the person at the terminal.

use cairn_config::{Config, LifecycleConfig};
use cairn_retention::RuleSet;
use std::path::{Path, PathBuf};

/// The appliance's configuration file, read when the data directory holds none.
const APPLIANCE_CONFIG: &str = "/etc/cairn/cairn.toml";

/// The configuration file in use; `None`: the built-in defaults.
pub fn file(data: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => [data.join("cairn.toml"), PathBuf::from(APPLIANCE_CONFIG)]
            .into_iter()
            .find(|p| p.is_file()),
    }
}

/// The configuration in use, read and checked; `None`: no file, the built-in defaults.
pub fn load(data: &Path, explicit: Option<&Path>) -> Result<Option<Config>, String> {
    file(data, explicit)
        .map(|f| Config::load(&f).map_err(|e| e.to_string()))
        .transpose()
}

/// The configured retention rules (relative rule files are read from the config file's
/// directory); the built-in default (`fr`) without a config file.
pub fn rule_set(data: &Path, explicit: Option<&Path>) -> Result<RuleSet, String> {
    let Some(f) = file(data, explicit) else {
        return LifecycleConfig::default()
            .rule_set(Path::new("."))
            .map_err(|e| e.to_string());
    };
    let config = Config::load(&f).map_err(|e| e.to_string())?;
    config
        .lifecycle
        .rule_set(f.parent().unwrap_or(Path::new(".")))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_come_from_the_data_directorys_config_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let base = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n";
        let own = dir.path().join("own.toml");
        std::fs::write(
            &own,
            format!("{base}[lifecycle]\nretention = \"fixed-10y\"\n"),
        )
        .unwrap();
        let r = rule_set(dir.path(), Some(&own)).unwrap();
        assert_eq!(r.name(), "fixed-10y");
        assert_eq!(file(dir.path(), Some(&own)), Some(own.clone()));
        std::fs::write(
            dir.path().join("cairn.toml"),
            format!("{base}[lifecycle]\nretention = \"nope\"\n"),
        )
        .unwrap();
        let e = rule_set(dir.path(), None).unwrap_err();
        assert!(
            e.contains("lifecycle.retention") && e.contains("nope"),
            "{e}"
        );
        assert!(load(dir.path(), None).is_err());
        let missing = dir.path().join("missing.toml");
        assert!(rule_set(dir.path(), Some(&missing))
            .unwrap_err()
            .contains("missing.toml"));
    }
}
