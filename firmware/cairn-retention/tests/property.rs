//! Property: for random rule sets and random facts, no expiry comes before any date a clause of
//! the rule set requires. Each clause is computed here on its own, with jiff's calendar
//! arithmetic (not the crate's), and a missing day read the later way.

use cairn_retention::{Birth, Expiry, Facts, FactsError, NeverReason, Period, RuleSet, Unit};
use jiff::civil::Date;
use jiff::Span;
use proptest::prelude::*;

/// A rule set as the test sees it; turned into TOML text and read by the crate.
#[derive(Clone, Debug)]
struct Rules {
    after_last_visit: Option<Period>,
    until_birthday: Option<u8>,
    death: Option<(Period, Period)>,
    after_study: Option<Period>,
    forever: bool,
}

impl Rules {
    fn toml(&self) -> String {
        let mut text = String::from("name = \"random\"\ndescription = \"random rules\"\n[keep]\n");
        if let Some(p) = self.after_last_visit {
            text += &format!("after_last_visit = \"{p}\"\n");
        }
        if let Some(age) = self.until_birthday {
            text += &format!("until_birthday = {age}\n");
        }
        if let Some((within, keep)) = self.death {
            text += &format!("death_within = \"{within}\"\nafter_death = \"{keep}\"\n");
        }
        if let Some(p) = self.after_study {
            text += &format!("after_study = \"{p}\"\n");
        }
        if self.forever {
            text += "forever = true\n";
        }
        text
    }
}

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![
        (1u32..=40).prop_map(|n| (n, Unit::Years)),
        (1u32..=300).prop_map(|n| (n, Unit::Months)),
        (1u32..=9000).prop_map(|n| (n, Unit::Days)),
    ]
    .prop_map(|(n, unit)| Period::new(n, unit).expect("in range"))
}

fn rules() -> impl Strategy<Value = Rules> {
    let clauses = (
        proptest::option::of(period()),
        proptest::option::of(1u8..=100),
        proptest::option::of((period(), period())),
        proptest::option::of(period()),
    )
        .prop_map(
            |(after_last_visit, until_birthday, death, after_study)| Rules {
                // The death clause needs the last-visit clause.
                death: death.filter(|_| after_last_visit.is_some()),
                after_last_visit,
                until_birthday,
                after_study,
                forever: false,
            },
        )
        .prop_filter("at least one clause", |r| {
            r.after_last_visit.is_some() || r.until_birthday.is_some() || r.after_study.is_some()
        });
    prop_oneof![
        8 => clauses,
        1 => Just(Rules { after_last_visit: None, until_birthday: None, death: None, after_study: None, forever: true }),
    ]
}

/// Dates with many 29 Februaries and month ends, where rounding matters.
fn date() -> impl Strategy<Value = Date> {
    prop_oneof![
        (1900i16..=2150, 1i8..=12, 1i8..=31).prop_map(|(y, m, d)| {
            let first = Date::new(y, m, 1).expect("valid");
            Date::new(y, m, d.min(first.days_in_month())).expect("valid")
        }),
        (475i16..=537).prop_filter_map("a leap year", |q| Date::new(q * 4, 2, 29).ok()),
        (1900i16..=2150, 1i8..=12)
            .prop_map(|(y, m)| Date::new(y, m, 1).expect("valid").last_of_month()),
    ]
}

fn plus_days(date: Date, days: i64) -> Date {
    date.checked_add(Span::new().days(days)).expect("in range")
}

/// Mostly possible facts (birth <= last visit <= death), sometimes anything at all.
fn facts() -> impl Strategy<Value = (Facts, Vec<Date>)> {
    let birth = prop_oneof![
        6 => Just(0u8),
        1 => Just(1u8),
        1 => Just(2u8),
    ];
    // One date is drawn from `date()` (so often a 29 February or a month end): the birth or the
    // last visit; the other is a random distance from it.
    let ordered = (
        (date(), 0i64..=40_000, any::<bool>()),
        birth,
        any::<bool>(),
        proptest::option::of(0i64..=9_000),
        any::<bool>(),
        proptest::collection::vec(date(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(
                (anchor, gap, anchor_is_visit),
                kind,
                visited,
                death_after,
                held,
                studies,
                visit_is_study,
            )| {
                let (born, visit) = if anchor_is_visit {
                    (plus_days(anchor, -gap), anchor)
                } else {
                    (anchor, plus_days(anchor, gap))
                };
                let last_visit = visited.then_some(visit);
                let death = death_after.map(|days| plus_days(last_visit.unwrap_or(born), days));
                let birth = match kind {
                    0 => Birth::Known(born),
                    1 => Birth::Missing,
                    _ => Birth::Unparseable,
                };
                let mut studies = studies;
                if let (true, Some(last)) = (visit_is_study, last_visit) {
                    studies.push(last);
                }
                (
                    Facts {
                        last_visit,
                        birth,
                        death,
                        held: held && studies.len() == 1,
                    },
                    studies,
                )
            },
        );
    let anything = (
        proptest::option::of(date()),
        proptest::option::of(date()),
        proptest::option::of(date()),
        proptest::collection::vec(date(), 0..3),
    )
        .prop_map(|(last_visit, born, death, studies)| {
            let birth = born.map_or(Birth::Missing, Birth::Known);
            (
                Facts {
                    last_visit,
                    birth,
                    death,
                    held: false,
                },
                studies,
            )
        });
    prop_oneof![6 => ordered, 1 => anything]
}

/// `period` after `from` by jiff's own arithmetic (which clamps 29 February + 1y to 28
/// February), and the later reading: the next day whenever jiff had to clamp.
fn later(period: Period, from: Date) -> Option<Date> {
    let clamped = earlier(period, from)?;
    if period.unit() != Unit::Days && clamped.day() != from.day() {
        clamped.tomorrow().ok()
    } else {
        Some(clamped)
    }
}

/// `period` after `from` with jiff's clamping (the earlier reading).
fn earlier(period: Period, from: Date) -> Option<Date> {
    let n = i64::from(period.amount());
    let span = match period.unit() {
        Unit::Years => Span::new().try_years(n).ok()?,
        Unit::Months => Span::new().try_months(n).ok()?,
        Unit::Days => Span::new().try_days(n).ok()?,
    };
    from.checked_add(span).ok()
}

/// What the law requires, computed clause by clause.
#[derive(Debug, PartialEq)]
enum Required {
    /// Each date a clause that applies requires (the record must be kept through it).
    Dates(Vec<Date>),
    /// No automatic expiry for this reason.
    Never(NeverReason),
    /// Data is missing: no automatic expiry, review.
    Review,
}

fn required(rules: &Rules, facts: &Facts, studies: &[Date]) -> Required {
    if facts.held {
        return Required::Never(NeverReason::Held);
    }
    if rules.forever {
        return Required::Never(NeverReason::Forever);
    }
    let mut dates: Vec<Option<Date>> = Vec::new();
    // Whether the clauses the death clause replaces may apply.
    let mut others_may = true;
    if let (Some((within, keep)), Some(death)) = (rules.death, facts.death) {
        let Some(last) = facts.last_visit else {
            return Required::Review;
        };
        let under_earlier = earlier(within, last).is_none_or(|bound| death < bound);
        let under_later = later(within, last).is_none_or(|bound| death < bound);
        others_may = !(under_earlier && under_later);
        if under_earlier || under_later {
            dates.push(later(keep, death));
        }
    }
    if others_may {
        if let Some(p) = rules.after_last_visit {
            let Some(last) = facts.last_visit else {
                return Required::Review;
            };
            dates.push(later(p, last));
        }
        if let Some(age) = rules.until_birthday {
            let Birth::Known(born) = facts.birth else {
                return Required::Review;
            };
            let years = Period::years(u32::from(age)).expect("in range");
            dates.push(later(years, born));
        }
    }
    if let Some(p) = rules.after_study {
        if studies.is_empty() {
            return Required::Review;
        }
        for &study in studies {
            dates.push(later(p, study));
        }
    }
    match dates.into_iter().collect::<Option<Vec<Date>>>() {
        Some(dates) => Required::Dates(dates),
        None => Required::Never(NeverReason::BeyondCalendar),
    }
}

/// Random rules and facts; often the death falls on or next to the end of the rules' death
/// window, where 29 February and month ends make the two readings of the window disagree.
fn case() -> impl Strategy<Value = (Rules, Facts, Vec<Date>)> {
    (rules(), facts(), proptest::option::of(-1i64..=1)).prop_map(
        |(rules, (mut facts, studies), near)| {
            if let (Some(offset), Some((within, _)), Some(last)) =
                (near, rules.death, facts.last_visit)
            {
                if let Some(bound) = earlier(within, last) {
                    facts.death = bound.checked_add(Span::new().days(offset)).ok();
                }
            }
            (rules, facts, studies)
        },
    )
}

fn impossible(facts: &Facts) -> bool {
    let birth = facts.birth_date();
    let before = |a: Option<Date>, b: Option<Date>| matches!((a, b), (Some(a), Some(b)) if a < b);
    before(facts.death, birth)
        || before(facts.death, facts.last_visit)
        || before(facts.last_visit, birth)
}

trait BirthDate {
    fn birth_date(&self) -> Option<Date>;
}

impl BirthDate for Facts {
    fn birth_date(&self) -> Option<Date> {
        match self.birth {
            Birth::Known(date) => Some(date),
            Birth::Missing | Birth::Unparseable => None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        // Integration tests have no lib.rs beside them to save failing cases next to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_expiry_is_earlier_than_any_clause_requires((rules, facts, studies) in case()) {
        let set = RuleSet::from_toml(&rules.toml()).expect("generated rules are valid");
        let got = set.expiry(&facts, &studies);
        if impossible(&facts) {
            let err: Result<Expiry, FactsError> = got;
            prop_assert!(err.is_err(), "impossible facts gave {err:?}");
            return Ok(());
        }
        let got = got.expect("possible facts are not an error");
        match required(&rules, &facts, &studies) {
            Required::Dates(dates) => {
                let Some(date) = got.date() else {
                    return Err(TestCaseError::fail(format!("kept forever ({got}) though every clause has an end: {dates:?}")));
                };
                for required in &dates {
                    prop_assert!(date >= *required, "expiry {date} ({got}) is before {required}, required by a clause");
                }
                // Not longer than the law either: the expiry is the latest requirement.
                prop_assert_eq!(Some(date), dates.iter().copied().max());
                prop_assert!(!got.needs_review());
            }
            Required::Never(why) => prop_assert_eq!(got, Expiry::Never { why }),
            Required::Review => {
                prop_assert_eq!(got.date(), None);
                prop_assert!(got.needs_review(), "{got:?} should ask for review");
            }
        }
    }

    #[test]
    fn the_french_rules_are_never_shorter_than_20_years_or_the_28th_birthday_without_a_death(
        (facts, studies) in facts(),
    ) {
        let fr = RuleSet::builtin("fr").expect("built in");
        let facts = Facts { death: None, held: false, ..facts };
        let Ok(got) = fr.expiry(&facts, &studies) else {
            prop_assert!(impossible(&facts));
            return Ok(());
        };
        if let Some(date) = got.date() {
            let last = facts.last_visit.expect("an expiry needs the last visit");
            let born = facts.birth_date().expect("an expiry needs the birth date");
            prop_assert!(date >= earlier(Period::years(20).expect("20y"), last).expect("in range"));
            prop_assert!(date >= earlier(Period::years(28).expect("28y"), born).expect("in range"));
        }
    }
}
