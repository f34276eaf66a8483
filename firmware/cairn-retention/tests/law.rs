//! The French rule set and the fixed-period example on the cases the law names.

use cairn_retention::{Birth, Clause, Expiry, Facts, FactsError, NeverReason, RuleSet};
use jiff::civil::{date, Date};

fn fr() -> RuleSet {
    RuleSet::builtin("fr").expect("the built-in fr rules parse")
}

fn facts(last_visit: Date, birth: Date) -> Facts {
    Facts {
        last_visit: Some(last_visit),
        birth: Birth::Known(birth),
        death: None,
        held: false,
    }
}

fn expiry(rules: &RuleSet, facts: Facts) -> Expiry {
    rules.expiry(&facts, &[]).expect("possible facts")
}

fn assert_on(got: Expiry, date: Date, sentence: &str) {
    assert_eq!(got.date(), Some(date), "{got:?}");
    assert_eq!(got.sentence(), sentence);
    assert!(!got.needs_review());
}

/// The French rules give `date`, for the reason `sentence`.
fn fr_on(facts: Facts, date: Date, sentence: &str) {
    assert_on(expiry(&fr(), facts), date, sentence);
}

fn assert_never(got: Expiry, why: NeverReason, sentence: &str, review: bool) {
    assert_eq!(got, Expiry::Never { why });
    assert_eq!(got.sentence(), sentence);
    assert_eq!(got.needs_review(), review);
}

#[test]
fn adult_is_kept_20_years_after_the_last_visit() {
    let got = expiry(&fr(), facts(date(2010, 1, 1), date(1970, 6, 15)));
    assert_on(
        got,
        date(2030, 1, 1),
        "20 years after the last visit on 2010-01-01",
    );
    assert!(matches!(
        got,
        Expiry::On {
            clause: Clause::AfterLastVisit { .. },
            ..
        }
    ));
}

#[test]
fn minor_at_the_last_visit_is_kept_until_the_28th_birthday() {
    // Born 2003-05-04, seen at 4 in 2007: 20 years gives 2027, the 28th birthday is 2031.
    fr_on(
        facts(date(2007, 9, 1), date(2003, 5, 4)),
        date(2031, 5, 4),
        "until the 28th birthday on 2031-05-04",
    );
}

#[test]
fn a_minor_seen_at_ten_reaches_28_before_the_20_years_end() {
    // Seen at 10 in 2010: the 28th birthday (2028) comes before 2030, so 20 years wins.
    fr_on(
        facts(date(2010, 3, 1), date(2000, 1, 1)),
        date(2030, 3, 1),
        "20 years after the last visit on 2010-03-01",
    );
}

#[test]
fn death_within_10_years_keeps_10_years_after_the_death() {
    let mut f = facts(date(2010, 1, 1), date(1950, 1, 1));
    f.death = Some(date(2015, 3, 2));
    fr_on(
        f,
        date(2025, 3, 2),
        "10 years after the death on 2015-03-02",
    );
}

#[test]
fn death_within_10_years_replaces_the_28th_birthday() {
    // A child seen at 2 who died at 5: the birthday clause no longer applies.
    let mut f = facts(date(2012, 1, 1), date(2010, 1, 1));
    f.death = Some(date(2015, 6, 1));
    fr_on(
        f,
        date(2025, 6, 1),
        "10 years after the death on 2015-06-01",
    );
    // With the death clause replacing it, the birth date is not needed.
    f.birth = Birth::Missing;
    assert_eq!(expiry(&fr(), f).date(), Some(date(2025, 6, 1)));
}

#[test]
fn death_10_years_or_more_after_the_last_visit_changes_nothing() {
    let mut f = facts(date(2010, 1, 1), date(1950, 1, 1));
    f.death = Some(date(2020, 1, 1)); // exactly 10 years: not "less than ten years"
    fr_on(
        f,
        date(2030, 1, 1),
        "20 years after the last visit on 2010-01-01",
    );
    f.death = Some(date(2024, 7, 1));
    fr_on(
        f,
        date(2030, 1, 1),
        "20 years after the last visit on 2010-01-01",
    );
    f.death = Some(date(2019, 12, 31)); // one day less than 10 years: the death clause
    fr_on(
        f,
        date(2029, 12, 31),
        "10 years after the death on 2019-12-31",
    );
}

#[test]
fn born_on_29_february_the_28th_birthday_in_a_common_year_is_1_march() {
    // 2100 is not a leap year: the 28th birthday of a child born 2072-02-29 is 2100-03-01.
    fr_on(
        facts(date(2073, 1, 1), date(2072, 2, 29)),
        date(2100, 3, 1),
        "until the 28th birthday on 2100-03-01",
    );
    // In a leap year it stays on 29 February.
    fr_on(
        facts(date(2005, 1, 1), date(2004, 2, 29)),
        date(2032, 2, 29),
        "until the 28th birthday on 2032-02-29",
    );
}

#[test]
fn born_on_29_february_an_18th_birthday_rule_rounds_up() {
    let rules = RuleSet::from_toml(
        "name = \"adult-18\"\ndescription = \"until 18\"\n[keep]\nuntil_birthday = 18\n",
    )
    .expect("valid rules");
    let got = expiry(&rules, facts(date(2005, 1, 1), date(2004, 2, 29)));
    assert_on(
        got,
        date(2022, 3, 1),
        "until the 18th birthday on 2022-03-01",
    );
}

#[test]
fn dates_on_29_february_round_up_for_visits_and_deaths() {
    let mut f = facts(date(2016, 2, 29), date(1950, 1, 1));
    f.death = Some(date(2017, 2, 28));
    fr_on(
        f,
        date(2027, 2, 28),
        "10 years after the death on 2017-02-28",
    );
    f.death = Some(date(2020, 2, 29));
    fr_on(
        f,
        date(2030, 3, 1),
        "10 years after the death on 2020-02-29",
    );
}

#[test]
fn a_death_on_the_day_the_readings_disagree_keeps_the_longer() {
    // Last visit 2016-02-29: "less than 10 years" ends 2026-02-28 or 2026-03-01. A death on
    // 2026-02-28 is within one reading only, so the longer of the two outcomes is kept: 20 years
    // after the visit (2036-02-29) rather than 10 years after the death (2036-02-28).
    let mut f = facts(date(2016, 2, 29), date(1950, 1, 1));
    f.death = Some(date(2026, 2, 28));
    fr_on(
        f,
        date(2036, 2, 29),
        "20 years after the last visit on 2016-02-29",
    );
    // A child: the 28th birthday is later than both, and still counts.
    let mut child = facts(date(2016, 2, 29), date(2015, 1, 1));
    child.death = Some(date(2026, 2, 28));
    fr_on(
        child,
        date(2043, 1, 1),
        "until the 28th birthday on 2043-01-01",
    );
    // On 2026-03-01 both readings agree the death came 10 years or more after the visit.
    child.death = Some(date(2026, 3, 1));
    fr_on(
        child,
        date(2043, 1, 1),
        "until the 28th birthday on 2043-01-01",
    );
    // On 2026-02-27 both agree it came less than 10 years after: the death clause alone.
    child.death = Some(date(2026, 2, 27));
    fr_on(
        child,
        date(2036, 2, 27),
        "10 years after the death on 2026-02-27",
    );
}

#[test]
fn missing_birth_date_means_no_automatic_expiry_and_review() {
    let mut f = facts(date(2010, 1, 1), date(1970, 1, 1));
    f.birth = Birth::Missing;
    assert_never(
        expiry(&fr(), f),
        NeverReason::BirthDateMissing,
        "no automatic expiry: the birth date is unknown (review)",
        true,
    );
}

#[test]
fn malformed_birth_date_means_no_automatic_expiry_and_review() {
    let mut f = facts(date(2010, 1, 1), date(1970, 1, 1));
    f.birth = Birth::from_dicom_da("19701301");
    assert_eq!(f.birth, Birth::Unparseable);
    assert_never(
        expiry(&fr(), f),
        NeverReason::BirthDateUnparseable,
        "no automatic expiry: the birth date cannot be read (review)",
        true,
    );
}

#[test]
fn a_rule_set_without_a_birthday_clause_does_not_need_the_birth_date() {
    let fixed = RuleSet::builtin("fixed-10y").expect("built in");
    let mut f = facts(date(2010, 1, 1), date(1970, 1, 1));
    f.birth = Birth::Unparseable;
    let got = fixed
        .expiry(&f, &[date(2012, 5, 6)])
        .expect("possible facts");
    assert_on(
        got,
        date(2022, 5, 6),
        "10 years after the study on 2012-05-06",
    );
}

#[test]
fn a_legal_hold_keeps_everything() {
    let mut f = facts(date(1980, 1, 1), date(1950, 1, 1));
    f.held = true;
    for rules in [fr(), RuleSet::builtin("fixed-10y").expect("built in")] {
        let got = rules
            .expiry(&f, &[date(1980, 1, 1)])
            .expect("possible facts");
        assert_never(
            got,
            NeverReason::Held,
            "kept while a legal hold is in place",
            false,
        );
    }
    // Held even when data is missing: the hold is the reason given.
    f.birth = Birth::Missing;
    f.last_visit = None;
    assert_eq!(
        expiry(&fr(), f),
        Expiry::Never {
            why: NeverReason::Held
        }
    );
}

#[test]
fn no_last_visit_means_no_automatic_expiry_and_review() {
    let mut f = facts(date(2010, 1, 1), date(1970, 1, 1));
    f.last_visit = None;
    assert_never(
        expiry(&fr(), f),
        NeverReason::LastVisitUnknown,
        "no automatic expiry: the last visit is unknown (review)",
        true,
    );
    f.death = Some(date(2011, 1, 1));
    assert_eq!(
        expiry(&fr(), f),
        Expiry::Never {
            why: NeverReason::LastVisitUnknown
        }
    );
}

#[test]
fn impossible_facts_are_errors_not_expiries() {
    let mut f = facts(date(2010, 1, 1), date(1970, 1, 1));
    f.death = Some(date(2009, 1, 1));
    assert_eq!(fr().expiry(&f, &[]), Err(FactsError::DeathBeforeLastVisit));
    f.last_visit = None;
    f.death = Some(date(1969, 1, 1));
    assert_eq!(fr().expiry(&f, &[]), Err(FactsError::DeathBeforeBirth));
    let f = facts(date(1969, 1, 1), date(1970, 1, 1));
    assert_eq!(fr().expiry(&f, &[]), Err(FactsError::LastVisitBeforeBirth));
    let held = Facts { held: true, ..f };
    assert_eq!(
        fr().expiry(&held, &[]),
        Err(FactsError::LastVisitBeforeBirth)
    );
}

#[test]
fn fixed_period_counts_from_each_study_date() {
    let fixed = RuleSet::builtin("fixed-10y").expect("built in");
    let f = Facts {
        last_visit: Some(date(2020, 1, 1)),
        birth: Birth::Missing,
        death: Some(date(2021, 1, 1)),
        held: false,
    };
    let one = fixed.expiry(&f, &[date(2012, 2, 29)]).expect("possible");
    assert_on(
        one,
        date(2022, 3, 1),
        "10 years after the study on 2012-02-29",
    );
    let all = fixed
        .expiry(&f, &[date(2012, 2, 29), date(2020, 1, 1), date(2015, 6, 1)])
        .expect("possible");
    assert_on(
        all,
        date(2030, 1, 1),
        "10 years after the study on 2020-01-01",
    );
    assert_never(
        fixed.expiry(&f, &[]).expect("possible"),
        NeverReason::StudyDateUnknown,
        "no automatic expiry: the study date is unknown (review)",
        true,
    );
}

#[test]
fn the_latest_clause_wins_when_rules_combine() {
    let rules = RuleSet::from_toml(
        "name = \"mixed\"\ndescription = \"d\"\n[keep]\nafter_last_visit = \"5y\"\nafter_study = \"30d\"\nuntil_birthday = 18\n",
    )
    .expect("valid");
    let f = facts(date(2020, 1, 1), date(1990, 1, 1));
    assert_on(
        rules.expiry(&f, &[date(2024, 12, 15)]).expect("possible"),
        date(2025, 1, 14),
        "30 days after the study on 2024-12-15",
    );
    assert_on(
        rules.expiry(&f, &[date(2019, 1, 1)]).expect("possible"),
        date(2025, 1, 1),
        "5 years after the last visit on 2020-01-01",
    );
    let young = facts(date(2020, 1, 1), date(2010, 7, 1));
    assert_on(
        rules.expiry(&young, &[date(2019, 1, 1)]).expect("possible"),
        date(2028, 7, 1),
        "until the 18th birthday on 2028-07-01",
    );
}

#[test]
fn forever_never_expires_without_review() {
    let rules = RuleSet::from_toml("name = \"all\"\ndescription = \"d\"\n[keep]\nforever = true\n")
        .expect("valid");
    let f = Facts {
        last_visit: None,
        birth: Birth::Missing,
        death: None,
        held: false,
    };
    assert_never(
        rules.expiry(&f, &[]).expect("possible"),
        NeverReason::Forever,
        "kept forever: the retention rules set no end",
        false,
    );
}

#[test]
fn ends_past_the_calendar_are_kept_forever() {
    let got = expiry(&fr(), facts(date(9990, 1, 1), date(9980, 1, 1)));
    assert_never(
        got,
        NeverReason::BeyondCalendar,
        "kept forever: the end falls after the year 9999",
        false,
    );
}
