//! The error a configuration file can give, naming the file, the key and the problem.

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
    /// `[lifecycle] retention` names no built-in rule set (and is not a file's path).
    #[error("lifecycle.retention: {}", unknown_rules(name))]
    UnknownRules {
        /// The name as written.
        name: String,
    },
    /// The retention rule file named by `[lifecycle] retention` has a mistake.
    #[error("{path}: {source}")]
    Rules {
        /// The rule file.
        path: PathBuf,
        /// What is wrong, with the line and the field.
        source: cairn_retention::RuleError,
    },
}

impl ConfigError {
    /// `key` of the file at `path` is out of its allowed range, because `message`.
    pub(crate) fn invalid(path: &Path, key: &'static str, message: &str) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message: message.to_string(),
        }
    }
}

/// Why `name` names no retention rule set, and what would.
pub(crate) fn unknown_rules(name: &str) -> String {
    format!(
        "no built-in retention rule set is named {name:?} (built in: {}); a clinic's own rule \
         file is given by its path, ending in .toml",
        cairn_retention::RuleSet::BUILTIN_NAMES.join(", ")
    )
}
