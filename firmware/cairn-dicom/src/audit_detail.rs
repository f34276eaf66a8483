//! Audit row details as small JSON objects, escaped and cut so that nothing a peer sends can
//! break the row or grow it without limit.

/// A tiny JSON object writer for audit details (values are escaped, at most 64 characters).
pub(crate) fn json_obj(pairs: &[(&str, &str)]) -> String {
    json_obj_with(pairs, 64)
}

/// JSON object with values cut to `max` characters; control characters become `?`.
pub(crate) fn json_obj_with(pairs: &[(&str, &str)], max: usize) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":\"");
        for c in v.chars().take(max) {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() || (max <= 64 && !c.is_ascii()) => s.push('?'),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// JSON object without a length cut (instance lists of a retrieve can be long).
pub(crate) fn json_obj_long(pairs: &[(&str, &str)]) -> String {
    json_obj_with(pairs, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_obj(&[("a", "x\"y\\z\n")]), "{\"a\":\"x\\\"y\\\\z?\"}");
    }
}
