//! A listing's query as `COPY (…) TO STDOUT (FORMAT binary)`.
//!
//! `COPY` takes no bind parameters, so each parameter `$n` of the listing's
//! query becomes one of two things ([`Parameter`]):
//! - a **literal**, for times and numbers: the caller formats them from
//!   typed values (no text from a request ever goes into the statement), and
//!   the planner sees them, as it sees bind parameters in a custom plan: a
//!   week of sessions is then read along the start-time index, in order,
//!   while a value it could not see gives an estimate that sorts the whole
//!   table first;
//! - a **setting**, for text and arrays (raw identities among them, which
//!   must not reach `pg_stat_activity` or the server's log): bound by
//!   [`store_parameters`] into a session setting (`acctstream.p3`, …), which
//!   the statement reads once, in an uncorrelated subquery (an init plan,
//!   still usable in an index condition). PostgreSQL converts the values to
//!   text and back itself: nothing here escapes a value.

use std::fmt::Write as _;

/// The prefix of the session settings that carry a listing's parameters.
const PREFIX: &str = "acctstream.p";

/// How parameter `$n` reaches the `COPY` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parameter {
    /// SQL text the caller formatted from a time or a number.
    Literal(String),
    /// A bound value of this SQL type, kept in a session setting.
    Setting(&'static str),
}

/// The statement that stores the setting parameters: bind parameter `$k` is
/// the `k`-th of them (in the order of `parameters`). `None` when there is
/// none.
pub fn store_parameters(parameters: &[Parameter]) -> Option<String> {
    let mut sql = String::from("SELECT ");
    let mut k = 0;
    for (i, parameter) in parameters.iter().enumerate() {
        let Parameter::Setting(ty) = parameter else {
            continue;
        };
        k += 1;
        if k > 1 {
            sql.push_str(", ");
        }
        let n = i + 1;
        let _ = write!(sql, "set_config('{PREFIX}{n}', ${k}::{ty}::text, false)");
    }
    (k > 0).then_some(sql)
}

/// `COPY (sql) TO STDOUT (FORMAT binary)`, with each parameter `$n` of `sql`
/// replaced as `parameters[n-1]` says. Text in single or double quotes is
/// left as it is, and so is a parameter not in `parameters` (a bug of the
/// caller, which PostgreSQL then reports).
pub fn copy_statement(sql: &str, parameters: &[Parameter]) -> String {
    let mut out = String::with_capacity(sql.len() + 64 * parameters.len() + 40);
    out.push_str("COPY (");
    let mut rest = sql;
    while let Some(at) = rest.find(['$', '\'', '"']) {
        out.push_str(&rest[..at]);
        let quote = rest.as_bytes()[at];
        let after = &rest[at + 1..];
        if quote != b'$' {
            // A quoted literal or identifier (a doubled quote is two of them).
            let end = after.find(quote as char).map_or(after.len(), |end| end + 1);
            out.push_str(&rest[at..at + 1 + end]);
            rest = &after[end..];
            continue;
        }
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let n: Option<usize> = after[..digits].parse().ok();
        match n.and_then(|n| Some((n, parameters.get(n.checked_sub(1)?)?))) {
            Some((_, Parameter::Literal(text))) => {
                let _ = write!(out, "({text})");
            }
            Some((n, Parameter::Setting(ty))) => {
                let _ = write!(out, "(SELECT current_setting('{PREFIX}{n}')::{ty})");
            }
            None => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out.push_str(") TO STDOUT (FORMAT binary)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(text: &str) -> Parameter {
        Parameter::Literal(text.into())
    }

    #[test]
    fn settings_are_bound_in_order() {
        let parameters = [
            literal("'2021-04-10T00:00:00Z'::timestamptz"),
            Parameter::Setting("text"),
            literal("7::int8"),
            Parameter::Setting("int8[]"),
        ];
        assert_eq!(
            store_parameters(&parameters).as_deref(),
            Some(
                "SELECT set_config('acctstream.p2', $1::text::text, false), \
                 set_config('acctstream.p4', $2::int8[]::text, false)"
            )
        );
        assert_eq!(store_parameters(&[literal("1::int8")]), None);
    }

    #[test]
    fn copy_writes_literals_and_reads_settings() {
        let sql = "SELECT a FROM t WHERE at >= $1 AND name = ANY($2::text[]) \
                   OFFSET $10 LIMIT $3";
        let mut parameters = vec![
            literal("'2021-04-10T00:00:00.000000Z'::timestamptz"),
            Parameter::Setting("text[]"),
            literal("100::int8"),
        ];
        parameters.extend(std::iter::repeat_n(literal("x"), 6));
        parameters.push(literal("0::int8"));
        assert_eq!(
            copy_statement(sql, &parameters),
            "COPY (SELECT a FROM t WHERE at >= ('2021-04-10T00:00:00.000000Z'::timestamptz) \
             AND name = ANY((SELECT current_setting('acctstream.p2')::text[])::text[]) \
             OFFSET (0::int8) LIMIT (100::int8)) TO STDOUT (FORMAT binary)"
        );
        // Quoted text and a `$` not followed by a digit stay, and so do a
        // parameter that was not given and an unterminated quote (bugs that
        // PostgreSQL reports).
        assert_eq!(
            copy_statement("SELECT '$1''$2', \"$3\", $x, $1", &[literal("1")]),
            "COPY (SELECT '$1''$2', \"$3\", $x, (1)) TO STDOUT (FORMAT binary)"
        );
        let copy = |sql| copy_statement(sql, &[literal("1")]);
        assert_eq!(
            copy("SELECT 'a$1"),
            "COPY (SELECT 'a$1) TO STDOUT (FORMAT binary)"
        );
        assert_eq!(
            copy("SELECT $2"),
            "COPY (SELECT $2) TO STDOUT (FORMAT binary)"
        );
        assert_eq!(
            copy("SELECT $0"),
            "COPY (SELECT $0) TO STDOUT (FORMAT binary)"
        );
    }

    #[test]
    fn no_kind_has_a_parameter_of_its_own() {
        use crate::core::kind::TimeModel;
        for kind in crate::kinds::REGISTRY.kinds() {
            let mut fixed = vec![kind.table, kind.id_column];
            match kind.time {
                TimeModel::Instant { column } => fixed.push(column),
                TimeModel::Interval { start, stop } => fixed.extend([start, stop]),
            }
            fixed.extend(kind.columns.iter().map(|c| c.sql));
            fixed.extend(kind.filters.iter().map(|f| f.column));
            for text in fixed {
                assert!(
                    !text.contains('$'),
                    "{}: `{text}` would be read as a parameter",
                    kind.name
                );
            }
        }
    }
}
