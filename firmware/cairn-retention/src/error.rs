//! Errors from reading a rule set.

use std::fmt;

/// Where in a rule set's text a problem is: line and column, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A rule set that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text is not TOML, or a field is unknown, missing or of the wrong type.
    #[error("retention rules: {}: {message}", position.map_or("somewhere in the file".to_owned(), |p| p.to_string()))]
    Syntax {
        /// Where, when the TOML reader could tell.
        position: Option<Position>,
        /// The TOML reader's explanation (it names the field).
        message: String,
    },
    /// A field holds a value the rules cannot use, or fields that cannot go together.
    #[error("retention rules: {position}: `{field}`: {problem}")]
    Invalid {
        /// Where the field is.
        position: Position,
        /// The field's name as written in the file.
        field: &'static str,
        /// What is wrong, in words.
        problem: String,
    },
    /// [`crate::RuleSet::builtin`] was asked for a name that is not built in.
    #[error("no built-in retention rule set is named {name:?} (built in: {})", crate::RuleSet::BUILTIN_NAMES.join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
    },
}

impl RuleError {
    /// The line the problem is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            RuleError::Syntax { position, .. } => position.map(|p| p.line),
            RuleError::Invalid { position, .. } => Some(position.line),
            RuleError::UnknownBuiltin { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        let quote = text.find('"').expect("a quote");
        assert_eq!(Position::of(text, quote), Position { line: 2, column: 6 });
        assert_eq!(Position::of(text, 999).line, 3);
    }
}
