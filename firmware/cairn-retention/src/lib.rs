//! cairn's legal retention policy: how long an archived patient record must be kept.
//!
//! This crate owns the rules and the arithmetic, nothing else. It must never do I/O: it reads no
//! file, no clock and no database. Callers pass the rule set's text, the patient's dates and
//! whether a legal hold applies, and get back an [`Expiry`]: a date with the clause that set it, or
//! no automatic expiry with the reason, both also as a sentence in words.
//!
//! # The rule set format (TOML)
//!
//! ```toml
//! name = "fr"                      # letters, digits, '-', '_', '.'
//! description = "France: ..."      # what the rules are for, in words
//! source = "Code de la santé publique, article R1112-7 ..."   # optional: the legal reference
//!
//! [keep]                           # at least one clause
//! after_last_visit = "20y"         # keep this long after the last visit
//! until_birthday = 28              # keep at least until this birthday (age in years, 1..=150)
//! death_within = "10y"             # death clause, both keys or neither: if the patient died
//! after_death = "10y"              #   less than death_within after the last visit, keep
//!                                  #   after_death after the death instead
//! after_study = "10y"              # keep this long after the study date
//! forever = false                  # true: keep for ever (alone: no other clause)
//! ```
//!
//! Periods are a whole number from 1 to 9999 and one unit: `y` (years), `m` (months) or `d`
//! (days), e.g. `"20y"`, `"6m"`, `"30d"`. Unknown keys are rejected. Errors name the line and
//! the field ([`RuleError`]). The death clause needs `after_last_visit` (it replaces it).
//!
//! # How the clauses combine
//!
//! 1. The facts are checked first: a death before the birth or before the last visit, or a last
//!    visit before the birth, is an error ([`FactsError`]), never an expiry.
//! 2. A legal hold means no expiry ([`NeverReason::Held`]); so does `forever = true`.
//! 3. If the patient died strictly less than `death_within` after the last visit, the death
//!    clause (`after_death` after the death) *replaces* `after_last_visit` and `until_birthday`.
//!    Otherwise those two apply. Where the two readings of a missing day disagree (see below)
//!    both the death clause and the clauses it would replace are applied.
//! 4. `after_study` applies in every case, counted from the latest study date given.
//! 5. The latest date among the clauses that apply is the expiry; the record is kept through
//!    that day. Among equal dates, the clause listed first above names the reason.
//!
//! Unknown data never shortens retention: when a clause that applies needs a date the caller does
//! not have (birth date missing or unreadable, no last visit, no study date), there is no
//! automatic expiry and [`Expiry::needs_review`] is true.
//!
//! # Dates
//!
//! Adding years or months to a day that does not exist in the target month (29 February plus
//! one year, 31 August plus six months) gives the first day of the following month, never the
//! last day of the month: the later reading, so retention is never shorter than the law.
//!
//! ```
//! use cairn_retention::{Birth, Facts, RuleSet};
//! use jiff::civil::date;
//!
//! let fr = RuleSet::builtin("fr")?;
//! let facts = Facts {
//!     last_visit: Some(date(2010, 1, 1)),
//!     birth: Birth::Known(date(1970, 6, 15)),
//!     death: None,
//!     held: false,
//! };
//! let expiry = fr.expiry(&facts, &[])?;
//! assert_eq!(expiry.date(), Some(date(2030, 1, 1)));
//! assert_eq!(expiry.sentence(), "20 years after the last visit on 2010-01-01");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compute;
mod error;
mod expiry;
mod facts;
mod period;
mod rules;

pub use error::{Position, RuleError};
pub use expiry::{Clause, Expiry, NeverReason};
pub use facts::{Birth, Facts, FactsError};
pub use period::{Period, PeriodError, Unit, MAX_AMOUNT};
pub use rules::{Clauses, DeathClause, RuleSet, MAX_BIRTHDAY};
