//! A listing's query as `COPY (…) TO STDOUT (FORMAT binary)`.
//!
//! `COPY` takes no bind parameters, and writing values into its text would
//! put them (raw identities among them) into `pg_stat_activity` and the
//! server's log. So the values go first, as bind parameters, into session
//! settings (`acctstream.p1`, …) by [`store_parameters`]; the `COPY` text
//! ([`copy_statement`]) reads each one once, in an uncorrelated subquery (an
//! init plan, usable in an index condition). The text depends only on the
//! listing's shape, never on its values, so it is prepared once per
//! connection. PostgreSQL converts the values to text and back itself:
//! nothing here escapes or formats a value.

use std::fmt::Write as _;

/// The prefix of the session settings that carry a listing's parameters.
const PREFIX: &str = "acctstream.p";

/// The statement that stores bind parameters `$1…$n`, of the SQL types
/// `types`, in the settings [`copy_statement`] reads.
pub fn store_parameters(types: &[&str]) -> String {
    let mut sql = String::from("SELECT ");
    for (i, ty) in types.iter().enumerate() {
        let n = i + 1;
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "set_config('{PREFIX}{n}', ${n}::{ty}::text, false)");
    }
    sql
}

/// `COPY (sql) TO STDOUT (FORMAT binary)`, with each parameter `$n` of `sql`
/// read from the setting [`store_parameters`] stored it in, as `types[n-1]`.
/// Text in single or double quotes is left as it is, and so is a parameter
/// without a type (a bug of the caller, which PostgreSQL then reports).
pub fn copy_statement(sql: &str, types: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len() + 64 * types.len() + 40);
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
        match n.and_then(|n| Some((n, types.get(n.checked_sub(1)?)?))) {
            Some((n, ty)) => {
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

    #[test]
    fn parameters_become_settings() {
        assert_eq!(
            store_parameters(&["timestamptz", "text[]"]),
            "SELECT set_config('acctstream.p1', $1::timestamptz::text, false), \
             set_config('acctstream.p2', $2::text[]::text, false)"
        );
    }

    #[test]
    fn copy_reads_each_parameter_from_its_setting() {
        let sql = "SELECT a FROM t WHERE at >= $1 AND name = ANY($2::text[]) \
                   OFFSET $10 LIMIT $3";
        let types = [
            "timestamptz",
            "text[]",
            "int8",
            "x",
            "x",
            "x",
            "x",
            "x",
            "x",
            "int8",
        ];
        assert_eq!(
            copy_statement(sql, &types),
            "COPY (SELECT a FROM t WHERE at >= (SELECT current_setting('acctstream.p1')::timestamptz) \
                 AND name = ANY((SELECT current_setting('acctstream.p2')::text[])::text[]) \
                 OFFSET (SELECT current_setting('acctstream.p10')::int8) \
                 LIMIT (SELECT current_setting('acctstream.p3')::int8)) TO STDOUT (FORMAT binary)"
        );
        // Quoted text and a `$` not followed by a digit stay, and so do a
        // parameter without a type and an unterminated quote (bugs that
        // PostgreSQL reports).
        assert_eq!(
            copy_statement("SELECT '$1''$2', \"$3\", $x, $1", &["int8"]),
            "COPY (SELECT '$1''$2', \"$3\", $x, (SELECT current_setting('acctstream.p1')::int8)) \
             TO STDOUT (FORMAT binary)"
        );
        let copy = |sql| copy_statement(sql, &["int8"]);
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
        for kind in crate::kinds::ALL {
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
