//! Download file names: the operator's prefix (`ACCTSTREAM_REPORT_FILENAME_PREFIX`)
//! put before the names a kind gives its downloads.

use std::fmt;

/// The longest file name prefix accepted.
pub const MAX_PREFIX_LEN: usize = 100;

/// A prefix for download file names (`ACCTSTREAM_REPORT_FILENAME_PREFIX`),
/// e.g. `MyCompany-B2B-`: only ASCII letters, digits, `.`, `_` and `-`, so
/// it is safe in a file name and in a quoted `Content-Disposition`
/// parameter. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilenamePrefix(String);

/// The file name prefix contains something other than `[A-Za-z0-9._-]` or is
/// too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a report file name prefix may contain only A-Z, a-z, 0-9, '.', '_' and '-', at most 100 characters")]
pub struct InvalidPrefix;

impl FilenamePrefix {
    /// Checks a prefix; the empty prefix is valid.
    pub fn parse(text: &str) -> Result<FilenamePrefix, InvalidPrefix> {
        let ok = text.len() <= MAX_PREFIX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(FilenamePrefix(text.to_owned()))
        } else {
            Err(InvalidPrefix)
        }
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix><rest>`.
    pub fn name(&self, rest: impl fmt::Display) -> String {
        format!("{}{rest}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(FilenamePrefix::default().name("a.csv"), "a.csv");
        let p = FilenamePrefix::parse("MyCompany-B2B_v1.").unwrap();
        assert_eq!(p.as_str(), "MyCompany-B2B_v1.");
        assert_eq!(p.name("a.csv"), "MyCompany-B2B_v1.a.csv");
        assert_eq!(FilenamePrefix::parse(""), Ok(FilenamePrefix::default()));
        assert!(FilenamePrefix::parse(&"x".repeat(100)).is_ok());
        for bad in [
            "a b",
            "a/b",
            "a\"b",
            "ä",
            "a;b",
            "a\\b",
            "a\r\n",
            &"x".repeat(101),
        ] {
            assert_eq!(FilenamePrefix::parse(bad), Err(InvalidPrefix), "{bad:?}");
        }
    }
}
