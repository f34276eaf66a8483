//! Reading rule sets: the shipped files, and errors that name the line and the field.

use cairn_retention::{DeathClause, Period, RuleError, RuleSet, Unit};

fn period(text: &str) -> Period {
    text.parse().expect("a valid period")
}

#[test]
fn the_built_in_french_rules_say_what_the_law_says() {
    let fr = RuleSet::builtin("fr").expect("parses");
    assert_eq!(fr.name(), "fr");
    assert!(fr.source().is_some_and(|s| s.contains("R1112-7")));
    let c = fr.clauses();
    assert_eq!(c.after_last_visit, Some(period("20y")));
    assert_eq!(c.until_birthday, Some(28));
    assert_eq!(
        c.death,
        Some(DeathClause {
            within: period("10y"),
            keep: period("10y")
        })
    );
    assert_eq!(c.after_study, None);
    assert!(!c.forever);
}

#[test]
fn the_built_in_fixed_example_keeps_10_years_after_the_study() {
    let fixed = RuleSet::builtin("fixed-10y").expect("parses");
    assert_eq!(fixed.name(), "fixed-10y");
    assert_eq!(fixed.source(), None);
    let c = fixed.clauses();
    assert_eq!(c.after_study, Period::new(10, Unit::Years));
    assert_eq!(
        (c.after_last_visit, c.until_birthday, c.death),
        (None, None, None)
    );
}

#[test]
fn every_built_in_name_parses_and_carries_its_own_name() {
    for name in RuleSet::BUILTIN_NAMES {
        let rules = RuleSet::builtin(name).expect(name);
        assert_eq!(rules.name(), name);
        let text = RuleSet::builtin_text(name).expect("text");
        assert_eq!(RuleSet::from_toml(text).expect("same text"), rules);
    }
}

#[test]
fn an_unknown_built_in_is_an_error_listing_the_known_ones() {
    let err = RuleSet::builtin("de").expect_err("not built in");
    assert_eq!(err, RuleError::UnknownBuiltin { name: "de".into() });
    assert_eq!(
        err.to_string(),
        "no built-in retention rule set is named \"de\" (built in: fr, fixed-10y)"
    );
    assert_eq!(RuleSet::builtin_text("de"), None);
}

/// Parses `text` expecting an error; returns its line and message.
fn error(text: &str) -> (Option<usize>, String) {
    let err = RuleSet::from_toml(text).expect_err("must be rejected");
    (err.line(), err.to_string())
}

const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n[keep]\n";

/// `HEAD` followed by `keep` (lines of the `[keep]` table) is refused on `line`, saying `says`.
fn refused(keep: &str, line: usize, says: &str) {
    let (got, msg) = error(&format!("{HEAD}{keep}"));
    assert_eq!(got, Some(line), "{msg}");
    assert!(msg.contains(says), "{msg:?} should contain {says:?}");
}

#[test]
fn a_bad_period_names_its_field_and_line() {
    let (line, msg) = error(&format!("{HEAD}after_last_visit = \"20 years\"\n"));
    assert_eq!(line, Some(4));
    let want =
        "retention rules: line 4, column 20: `after_last_visit`: \"20 years\" is not a period";
    assert!(msg.starts_with(want), "{msg}");
    refused(
        "after_last_visit = \"20y\"\nafter_study = \"0d\"\n",
        5,
        "`after_study`: \"0d\"",
    );
    refused(
        "after_study = \"1y6m\"\n",
        4,
        "`after_study`: \"1y6m\" is not",
    );
}

#[test]
fn an_unknown_field_is_named() {
    refused(
        "after_last_vist = \"20y\"\n",
        4,
        "unknown field `after_last_vist`",
    );
    let (line, msg) =
        error("name = \"x\"\ndescription = \"d\"\njurisdiction = \"fr\"\n[keep]\nforever = true\n");
    assert_eq!(line, Some(3));
    assert!(msg.contains("unknown field `jurisdiction`"), "{msg}");
}

#[test]
fn a_missing_field_is_named() {
    let (_, msg) = error("description = \"d\"\n[keep]\nforever = true\n");
    assert!(msg.contains("missing field `name`"), "{msg}");
    let (_, msg) = error("name = \"x\"\ndescription = \"d\"\n");
    assert!(msg.contains("missing field `keep`"), "{msg}");
}

#[test]
fn a_wrong_type_is_named_with_its_line() {
    refused(
        "until_birthday = \"28\"\n",
        4,
        "`until_birthday`: write an age in whole years",
    );
    refused(
        "after_last_visit = 20\n",
        4,
        "`after_last_visit`: must be a period in double quotes, like \"20y\"",
    );
    refused("forever = \"yes\"\n", 4, "`forever`: must be true or false");
    let (line, msg) = error("name = 7\ndescription = \"d\"\n[keep]\nforever = true\n");
    assert_eq!(line, Some(1));
    assert!(msg.contains("`name`: must be text"), "{msg}");
    let (line, msg) =
        error("name = \"x\"\ndescription = \"d\"\nsource = [1]\n[keep]\nforever = true\n");
    assert_eq!(line, Some(3));
    assert!(msg.contains("`source`: must be text"), "{msg}");
}

#[test]
fn text_that_is_not_toml_is_reported_with_its_line() {
    let (line, msg) = error("name = \"x\"\ndescription = \"d\n[keep]\n");
    assert_eq!(line, Some(2));
    assert!(msg.starts_with("retention rules: line 2"), "{msg}");
}

#[test]
fn an_age_out_of_range_is_rejected() {
    for age in ["0", "-1", "151", "300", "28.5"] {
        refused(
            &format!("until_birthday = {age}\n"),
            4,
            "`until_birthday`: write an age",
        );
    }
    assert!(RuleSet::from_toml(&format!("{HEAD}until_birthday = 150\n")).is_ok());
}

#[test]
fn the_death_clause_needs_both_keys_and_a_last_visit_clause() {
    let visit = "after_last_visit = \"20y\"\n";
    refused(
        &format!("{visit}death_within = \"10y\"\n"),
        5,
        "`death_within`: needs `after_death`",
    );
    refused(
        &format!("{visit}after_death = \"10y\"\n"),
        5,
        "`after_death`: needs `death_within`",
    );
    let no_visit = "until_birthday = 28\ndeath_within = \"10y\"\nafter_death = \"10y\"\n";
    refused(
        no_visit,
        5,
        "`death_within`: the death clause replaces the last-visit clause",
    );
}

#[test]
fn forever_stands_alone_and_an_empty_keep_is_refused() {
    refused(
        "after_study = \"1y\"\nforever = true\n",
        5,
        "`forever`: `forever = true`",
    );
    refused("forever = false\n", 3, "`keep`: gives no clause");
    refused("", 3, "`keep`: gives no clause");
}

#[test]
fn names_and_descriptions_are_checked() {
    let (line, msg) = error("name = \"my rules\"\ndescription = \"d\"\n[keep]\nforever = true\n");
    assert_eq!(line, Some(1));
    assert!(msg.contains("`name`: write 1 to 64 letters"), "{msg}");
    let (line, msg) = error("name = \"x\"\ndescription = \"  \"\n[keep]\nforever = true\n");
    assert_eq!(line, Some(2));
    assert!(msg.contains("`description`: say in words"), "{msg}");
}

#[test]
fn a_clinic_file_with_every_optional_field_reads() {
    let rules = RuleSet::from_toml(
        r#"
name = "clinic-2026"
description = "Our own rules."
source = ""

[keep]
after_last_visit = "6m"
after_study = "30d"
forever = false
"#,
    )
    .expect("valid");
    assert_eq!(rules.name(), "clinic-2026");
    assert_eq!(rules.source(), None);
    assert_eq!(
        rules.clauses().after_last_visit,
        Period::new(6, Unit::Months)
    );
    assert_eq!(rules.clauses().after_study, Period::new(30, Unit::Days));
}

/// The TOML blocks of the staff documentation.
fn documented_blocks() -> Vec<&'static str> {
    const DOC: &str = include_str!("../../../docs/retention.md");
    DOC.split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

#[test]
fn the_documentation_shows_the_shipped_files_and_a_valid_clinic_example() {
    let blocks = documented_blocks();
    for name in RuleSet::BUILTIN_NAMES {
        let text = RuleSet::builtin_text(name).expect("built in");
        let from_name = &text[text.find("name =").expect("a name")..];
        assert!(
            blocks.contains(&from_name),
            "docs/retention.md must show {name} as shipped"
        );
    }
    let clinic = blocks.last().expect("a clinic example");
    let rules = RuleSet::from_toml(clinic).expect("the documented clinic example is valid");
    assert_eq!(rules.name(), "clinic-2026");
}
