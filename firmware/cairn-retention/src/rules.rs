//! Rule sets: read from TOML, validated, and the built-in ones shipped with the crate.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Position, RuleError};
use crate::period::Period;

/// The death clause: if the patient died less than `within` after the last visit, the record is
/// kept `keep` after the death instead of the last-visit and birthday clauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeathClause {
    /// How soon after the last visit a death must come for the clause to apply (strictly less).
    pub within: Period,
    /// How long after the death the record is then kept.
    pub keep: Period,
}

/// The clauses of a rule set; how they combine is described in the crate documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clauses {
    /// Keep this long after the patient's last visit.
    pub after_last_visit: Option<Period>,
    /// Keep at least until this birthday (age in years).
    pub until_birthday: Option<u8>,
    /// Keep this long after a death that came soon after the last visit, instead.
    pub death: Option<DeathClause>,
    /// Keep this long after each study's date.
    pub after_study: Option<Period>,
    /// Keep forever (never combined with another clause).
    pub forever: bool,
}

/// A named, validated retention rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    name: String,
    description: String,
    source: Option<String>,
    clauses: Clauses,
}

const FR: &str = include_str!("../rules/fr.toml");
const FIXED_10Y: &str = include_str!("../rules/fixed-10y.toml");

/// The largest age an `until_birthday` clause may name.
pub const MAX_BIRTHDAY: u8 = 150;

impl RuleSet {
    /// The names of the rule sets shipped with the crate; `fr` is the default.
    pub const BUILTIN_NAMES: [&'static str; 2] = ["fr", "fixed-10y"];

    /// The built-in rule set called `name` (see [`RuleSet::BUILTIN_NAMES`]).
    pub fn builtin(name: &str) -> Result<RuleSet, RuleError> {
        let text = match name {
            "fr" => FR,
            "fixed-10y" => FIXED_10Y,
            _ => {
                return Err(RuleError::UnknownBuiltin {
                    name: name.to_owned(),
                })
            }
        };
        RuleSet::from_toml(text)
    }

    /// The TOML text of the built-in rule set called `name`, for showing or copying.
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        match name {
            "fr" => Some(FR),
            "fixed-10y" => Some(FIXED_10Y),
            _ => None,
        }
    }

    /// Reads and validates a rule set from its TOML text (the format is in the crate
    /// documentation). Errors give the line and the field.
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        let raw: Raw = toml::from_str(text).map_err(|e| RuleError::Syntax {
            position: e.span().map(|span| Position::of(text, span.start)),
            message: e.message().trim().to_owned(),
        })?;
        raw.validate(text)
    }

    /// The rule set's name (letters, digits, `-`, `_`, `.`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the rule set is for, in words.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The legal reference the rules come from, when given.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The clauses.
    pub fn clauses(&self) -> &Clauses {
        &self.clauses
    }
}

/// Every value is read as any TOML value with its place in the text, so that a value of the
/// wrong type is reported by this crate in words, naming the field.
type Field = Spanned<toml::Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Field,
    description: Field,
    source: Option<Field>,
    keep: Spanned<RawKeep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    after_last_visit: Option<Field>,
    until_birthday: Option<Field>,
    death_within: Option<Field>,
    after_death: Option<Field>,
    after_study: Option<Field>,
    forever: Option<Field>,
}

/// Builds [`RuleError::Invalid`] for the field at `span`.
fn invalid(text: &str, span: Range<usize>, field: &'static str, problem: String) -> RuleError {
    RuleError::Invalid {
        position: Position::of(text, span.start),
        field,
        problem,
    }
}

/// The field's text, or an error saying it must be text in quotes.
fn string<'a>(text: &str, field: &'static str, value: &'a Field) -> Result<&'a str, RuleError> {
    value.get_ref().as_str().ok_or_else(|| {
        invalid(
            text,
            value.span(),
            field,
            "must be text in double quotes".into(),
        )
    })
}

fn period(
    text: &str,
    field: &'static str,
    value: Option<&Field>,
) -> Result<Option<Period>, RuleError> {
    value
        .map(|v| {
            let wrong = |problem: String| invalid(text, v.span(), field, problem);
            let written = v.get_ref().as_str().ok_or_else(|| {
                wrong(format!(
                    "must be a period in double quotes, like \"{}\"",
                    example(v)
                ))
            })?;
            written.parse::<Period>().map_err(|e| wrong(e.to_string()))
        })
        .transpose()
}

/// A quoted example built from an unquoted number (`20` suggests `"20y"`).
fn example(value: &Field) -> String {
    match value.get_ref().as_integer() {
        Some(n) if n > 0 => format!("{n}y"),
        _ => "20y".into(),
    }
}

impl Raw {
    fn validate(self, text: &str) -> Result<RuleSet, RuleError> {
        let name = string(text, "name", &self.name)?.trim();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                text,
                self.name.span(),
                "name",
                "write 1 to 64 letters, digits, '-', '_' or '.', like \"fr\" or \"clinic-2026\""
                    .into(),
            ));
        }
        let description = string(text, "description", &self.description)?.trim();
        if description.is_empty() {
            return Err(invalid(
                text,
                self.description.span(),
                "description",
                "say in words what the rules are for".into(),
            ));
        }
        let source = match &self.source {
            Some(field) => Some(string(text, "source", field)?.trim()).filter(|s| !s.is_empty()),
            None => None,
        };
        let keep_span = self.keep.span();
        let keep = self.keep.into_inner();
        let clauses = keep.validate(text, keep_span)?;
        Ok(RuleSet {
            name: name.to_owned(),
            description: description.to_owned(),
            source: source.map(str::to_owned),
            clauses,
        })
    }
}

impl RawKeep {
    fn validate(self, text: &str, span: Range<usize>) -> Result<Clauses, RuleError> {
        let after_last_visit = period(text, "after_last_visit", self.after_last_visit.as_ref())?;
        let after_study = period(text, "after_study", self.after_study.as_ref())?;
        let death_within = period(text, "death_within", self.death_within.as_ref())?;
        let after_death = period(text, "after_death", self.after_death.as_ref())?;
        let until_birthday = self
            .until_birthday
            .as_ref()
            .map(|v| {
                v.get_ref()
                    .as_integer()
                    .and_then(|n| u8::try_from(n).ok())
                    .filter(|age| (1..=MAX_BIRTHDAY).contains(age))
                    .ok_or_else(|| {
                        invalid(
                            text,
                            v.span(),
                            "until_birthday",
                            format!("write an age in whole years from 1 to {MAX_BIRTHDAY}, without quotes, like 28"),
                        )
                    })
            })
            .transpose()?;
        let death =
            match (death_within, after_death) {
                (Some(within), Some(keep)) => Some(DeathClause { within, keep }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(invalid(
                        text,
                        span_of(&self.death_within, &span),
                        "death_within",
                        "needs `after_death` too (how long to keep after the death)".into(),
                    ))
                }
                (None, Some(_)) => return Err(invalid(
                    text,
                    span_of(&self.after_death, &span),
                    "after_death",
                    "needs `death_within` too (how soon after the last visit the death must come)"
                        .into(),
                )),
            };
        if death.is_some() && after_last_visit.is_none() {
            return Err(invalid(
                text,
                span_of(&self.death_within, &span),
                "death_within",
                "the death clause replaces the last-visit clause, so `after_last_visit` must be given too".into(),
            ));
        }
        let forever = match &self.forever {
            Some(f) => f.get_ref().as_bool().ok_or_else(|| {
                invalid(
                    text,
                    f.span(),
                    "forever",
                    "must be true or false (no quotes)".into(),
                )
            })?,
            None => false,
        };
        let others = after_last_visit.is_some()
            || until_birthday.is_some()
            || after_study.is_some()
            || death.is_some();
        if forever && others {
            return Err(invalid(
                text,
                span_of(&self.forever, &span),
                "forever",
                "`forever = true` keeps everything for ever and cannot be combined with other clauses; remove them or remove `forever`".into(),
            ));
        }
        if !forever && !others {
            return Err(invalid(
                text,
                span,
                "keep",
                "gives no clause, so nothing would be kept: give at least one of `after_last_visit`, `until_birthday`, `after_study` or `forever = true`".into(),
            ));
        }
        Ok(Clauses {
            after_last_visit,
            until_birthday,
            death,
            after_study,
            forever,
        })
    }
}

fn span_of<T>(value: &Option<Spanned<T>>, fallback: &Range<usize>) -> Range<usize> {
    value.as_ref().map_or(fallback.clone(), |v| v.span())
}
