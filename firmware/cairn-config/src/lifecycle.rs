//! `[lifecycle]`: which retention rules apply, when studies may move to the archive tier,
//! whether expired records may be destroyed without a person, and whether the date-dependent
//! passes wait for a synchronised clock.

use crate::error::{unknown_rules, ConfigError};
use crate::Config;
use cairn_retention::{Period, PeriodError, RuleSet};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[lifecycle]`: how long images are kept and what happens to them with age.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The retention rule set: a built-in name (see [`RuleSet::BUILTIN_NAMES`], default `fr`)
    /// or the path of a TOML rule-set file (ending in `.toml` or holding a `/`; a relative path
    /// is taken from the config file's directory).
    #[serde(default = "default_retention")]
    pub retention: String,
    /// How old a study must be before it moves to the archive tier (once its copies are
    /// verified): a period such as `"3y"`, `"6m"` or `"30d"`, or `"0"` (no wait). Read with
    /// [`LifecycleConfig::archive_after`].
    #[serde(default = "default_archive_after")]
    pub archive_after: String,
    /// Whether patients whose time to keep is over (and not held) are destroyed once a day
    /// without an admin's approval (default false).
    #[serde(default)]
    pub auto_destroy: bool,
    /// Whether the date-dependent passes (tiers, expiry, destruction) wait until the kernel
    /// says the system clock is synchronised. Unset: yes on the appliance (a `[hardware]
    /// board` in the config), no elsewhere. Read with [`Config::clock_sync_required`].
    #[serde(default)]
    pub require_clock_sync: Option<bool>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            retention: default_retention(),
            archive_after: default_archive_after(),
            auto_destroy: false,
            require_clock_sync: None,
        }
    }
}

fn default_retention() -> String {
    "fr".into()
}

fn default_archive_after() -> String {
    "3y".into()
}

/// Where the rule set named by `[lifecycle] retention` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// A rule set shipped with cairn, by name.
    Builtin(String),
    /// A clinic's own TOML file.
    File(PathBuf),
}

impl LifecycleConfig {
    /// Where the configured rule set comes from; a relative file is taken from `config_dir`.
    /// A value ending in `.toml` or holding a `/` is a file, anything else a built-in name.
    pub fn rules_source(&self, config_dir: &Path) -> RulesSource {
        let r = self.retention.as_str();
        if r.ends_with(".toml") || r.contains('/') {
            RulesSource::File(config_dir.join(r))
        } else {
            RulesSource::Builtin(r.to_owned())
        }
    }

    /// The configured retention rule set, read and checked. An unknown built-in name, a file
    /// that cannot be read and a file with a mistake are errors naming the name or the file
    /// (and the line).
    pub fn rule_set(&self, config_dir: &Path) -> Result<RuleSet, ConfigError> {
        match self.rules_source(config_dir) {
            RulesSource::Builtin(name) => {
                RuleSet::builtin(&name).map_err(|_| ConfigError::UnknownRules { name })
            }
            RulesSource::File(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                RuleSet::from_toml(&text).map_err(|source| ConfigError::Rules { path, source })
            }
        }
    }

    /// The archive-tier period; `None` when written `"0"`.
    pub fn archive_after(&self) -> Result<Option<Period>, PeriodError> {
        if self.archive_after == "0" {
            return Ok(None);
        }
        self.archive_after.parse().map(Some)
    }

    /// The first value of `[lifecycle]` that cannot be used, if any; the rule set is read from
    /// its file so a mistake stops the box at start. `path` is the config file.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if let Err(e) = self.archive_after() {
            return Err(ConfigError::invalid(
                path,
                "lifecycle.archive_after",
                &format!("{e}, or \"0\""),
            ));
        }
        match self.rule_set(path.parent().unwrap_or(Path::new("."))) {
            Ok(_) => Ok(()),
            Err(ConfigError::UnknownRules { name }) => Err(ConfigError::invalid(
                path,
                "lifecycle.retention",
                &unknown_rules(&name),
            )),
            Err(e) => Err(e),
        }
    }
}

impl Config {
    /// Whether the lifecycle's date-dependent passes wait for a synchronised system clock:
    /// `[lifecycle] require_clock_sync` when set, else whether a `[hardware] board` is (the
    /// appliance). The daemon, `cairnctl lifecycle status` and the panel all use this value.
    pub fn clock_sync_required(&self) -> bool {
        self.lifecycle
            .require_clock_sync
            .unwrap_or(self.hardware.board.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[dicom]\nae_title = \"CAIRN\"\n[store]\ndata_dir = \"/d\"\n";

    /// The config file `cairn.toml` in `dir` with `lifecycle` as its `[lifecycle]` section.
    fn load(dir: &Path, lifecycle: &str) -> Result<Config, ConfigError> {
        let path = dir.join("cairn.toml");
        std::fs::write(&path, format!("{BASE}[lifecycle]\n{lifecycle}")).unwrap();
        Config::load(&path)
    }

    #[test]
    fn defaults_are_the_french_rules_three_years_and_no_automatic_destruction() {
        let c = Config::parse(BASE, Path::new("t")).unwrap();
        assert_eq!(c.lifecycle, LifecycleConfig::default());
        assert_eq!(c.lifecycle.retention, "fr");
        assert_eq!(c.lifecycle.archive_after().unwrap(), "3y".parse().ok());
        assert!(!c.lifecycle.auto_destroy);
        assert_eq!(c.lifecycle.require_clock_sync, None);
        let rules = c.lifecycle.rule_set(Path::new("/nowhere")).unwrap();
        assert_eq!(rules.name(), "fr");
    }

    #[test]
    fn every_builtin_name_loads() {
        let dir = tempfile::tempdir().unwrap();
        for name in RuleSet::BUILTIN_NAMES {
            let c = load(dir.path(), &format!("retention = \"{name}\"\n")).unwrap();
            assert_eq!(c.lifecycle.rule_set(dir.path()).unwrap().name(), name);
        }
    }

    #[test]
    fn archive_after_takes_a_period_or_zero() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(dir.path(), "archive_after = \"0\"\nauto_destroy = true\n").unwrap();
        assert_eq!(c.lifecycle.archive_after().unwrap(), None);
        assert!(c.lifecycle.auto_destroy);
        let c = load(dir.path(), "archive_after = \"18m\"\n").unwrap();
        assert_eq!(c.lifecycle.archive_after().unwrap(), "18m".parse().ok());
        for bad in ["3 years", "", "0y", "-1y", "3Y"] {
            let e = load(dir.path(), &format!("archive_after = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("cairn.toml: lifecycle.archive_after:"), "{e}");
            assert!(e.contains("\"0\""), "{e}");
        }
    }

    #[test]
    fn clock_sync_is_required_on_the_appliance_unless_the_config_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let board = "[hardware]\nboard = \"/b/board.toml\"\n";
        let cases = [
            ("", "", false),
            ("", board, true),
            ("require_clock_sync = true\n", "", true),
            ("require_clock_sync = false\n", board, false),
            ("require_clock_sync = true\n", board, true),
        ];
        for (key, hardware, required) in cases {
            let path = dir.path().join("cairn.toml");
            std::fs::write(&path, format!("{BASE}{hardware}[lifecycle]\n{key}")).unwrap();
            let c = Config::load(&path).unwrap();
            assert_eq!(c.clock_sync_required(), required, "{key:?} {hardware:?}");
        }
        let c = Config::parse(&format!("{BASE}{board}"), Path::new("t")).unwrap();
        assert!(
            c.clock_sync_required(),
            "no [lifecycle] section on the appliance"
        );
        assert!(load(dir.path(), "require_clock_sync = \"no\"\n").is_err());
    }

    #[test]
    fn an_unknown_name_stops_the_box_naming_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), "retention = \"france\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cairn.toml: lifecycle.retention:"), "{e}");
        assert!(e.contains("\"france\""), "{e}");
        assert!(e.contains("fr, fixed-10y"), "{e}");
    }

    #[test]
    fn a_rule_file_is_read_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let own =
            "name = \"clinic-2026\"\ndescription = \"Ours\"\n[keep]\nafter_last_visit = \"5y\"\n";
        std::fs::write(dir.path().join("clinic.toml"), own).unwrap();
        std::fs::write(dir.path().join("rules/other.toml"), own).unwrap();
        for written in ["clinic.toml", "rules/other.toml"] {
            let c = load(dir.path(), &format!("retention = \"{written}\"\n")).unwrap();
            assert_eq!(
                c.lifecycle.rules_source(dir.path()),
                RulesSource::File(dir.path().join(written))
            );
            assert_eq!(
                c.lifecycle.rule_set(dir.path()).unwrap().name(),
                "clinic-2026"
            );
        }
        let absolute = dir.path().join("clinic.toml");
        let c = load(
            dir.path(),
            &format!("retention = \"{}\"\n", absolute.display()),
        )
        .unwrap();
        let elsewhere = c.lifecycle.rule_set(Path::new("/nowhere")).unwrap();
        assert_eq!(elsewhere.name(), "clinic-2026");
    }

    #[test]
    fn a_missing_rule_file_stops_the_box_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), "retention = \"missing.toml\"\n")
            .unwrap_err()
            .to_string();
        let file = dir.path().join("missing.toml");
        assert!(
            e.starts_with(&format!("cannot read {}", file.display())),
            "{e}"
        );
    }

    #[test]
    fn a_mistake_in_the_rule_file_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clinic.toml");
        std::fs::write(
            &file,
            "name = \"clinic\"\ndescription = \"Ours\"\n[keep]\nafter_last_visit = \"20 years\"\n",
        )
        .unwrap();
        let e = load(dir.path(), "retention = \"clinic.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{}: ", file.display())), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("after_last_visit"), "{e}");
        std::fs::write(
            &file,
            "name = \"clinic\"\ndescription = \"Ours\"\n[keep]\nforevr = true\n",
        )
        .unwrap();
        let e = load(dir.path(), "retention = \"clinic.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("forevr"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), "retenton = \"fr\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retenton"), "{e}");
        assert!(load(dir.path(), "auto_destroy = \"yes\"\n").is_err());
    }
}
