//! The access audit trail's entries, and how request parameters are kept
//! in them: as a query string in which every identity value is a pseudonym
//! (a raw value given by a token with the `identities` scope is
//! pseudonymised here, so the trail itself holds no raw identity).

use chrono::{DateTime, Utc};

use crate::core::{
    identity::{is_pseudonym, pseudonym_of, IdentityType},
    pseudonym::Pseudonymiser,
};

/// One audited request.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The static token's label or the access token's client.
    pub client: String,
    /// The scopes it held, joined by `+`.
    pub scopes: String,
    /// The HTTP method.
    pub method: String,
    /// The route template.
    pub route: String,
    /// Path and query parameters (see [`parameters`]).
    pub parameters: String,
    /// `json`, `csv`, `ndjson` (or the media type) of the response body.
    pub representation: Option<String>,
    /// The status sent.
    pub status: u16,
    /// Records streamed, for responses that stream records.
    pub rows: Option<u64>,
    /// Body bytes sent (after compression).
    pub bytes: u64,
    /// Whether the body was sent to its end.
    pub completed: bool,
    /// From arrival to the body's end, in milliseconds.
    pub duration_ms: f64,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The organization of the token (issue 28): its readers of the audit
    /// trail see the entry.
    pub tenant: String,
}

/// How a parameter is kept in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// As given (a known parameter that carries no identity).
    AsGiven,
    /// As the pseudonym of an identity of this type.
    Identity(IdentityType),
}

/// `name=value&…` of the path parameters, then the query pairs, in order,
/// percent-encoded. `kept` says how each is kept: a parameter it does not
/// know (a client's typo may carry anything) is kept as the pseudonym of its
/// text, like an identity, so no raw identity reaches the trail whatever a
/// client sends; an identity already given as a pseudonym stays as it is.
pub fn parameters(
    pairs: &[(String, String)],
    kept: impl Fn(&str) -> Option<Kept>,
    pseudonymiser: &Pseudonymiser,
) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        let shown = match kept(name) {
            Some(Kept::AsGiven) => value.clone(),
            _ if is_pseudonym(value) => value.clone(),
            Some(Kept::Identity(ty)) => pseudonym_of(pseudonymiser, ty, value),
            None => pseudonym_of(pseudonymiser, IdentityType::User, value),
        };
        out.extend(form_urlencoded(name));
        out.push('=');
        out.extend(form_urlencoded(&shown));
    }
    out
}

fn form_urlencoded(text: &str) -> impl Iterator<Item = &str> {
    percent_encoding::utf8_percent_encode(text, QUERY)
}

const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// The representation of a response body from its `Content-Type`.
pub fn representation(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    Some(match essence.as_str() {
        "" => return None,
        "application/json" => "json".to_owned(),
        "text/csv" => "csv".to_owned(),
        "application/x-ndjson" => "ndjson".to_owned(),
        _ => essence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_parameters_are_kept_only_as_pseudonyms() {
        let key = Pseudonymiser::new(b"k").unwrap();
        let pairs = vec![
            ("period".to_owned(), "day".to_owned()),
            ("user".to_owned(), "jane@example.com".to_owned()),
            ("nas".to_owned(), "10.0.0.1".to_owned()),
            ("device".to_owned(), "a".repeat(64)),
            ("userId".to_owned(), "bob@example.com".to_owned()),
        ];
        let kept = |name: &str| match name {
            "user" => Some(Kept::Identity(IdentityType::RadiusUser)),
            "device" => Some(Kept::Identity(IdentityType::Mac)),
            "period" | "nas" => Some(Kept::AsGiven),
            _ => None,
        };
        let text = parameters(&pairs, kept, &key);
        let expected = pseudonym_of(&key, IdentityType::RadiusUser, "jane@example.com");
        let unknown = pseudonym_of(&key, IdentityType::User, "bob@example.com");
        assert_eq!(
            text,
            format!(
                "period=day&user={expected}&nas=10.0.0.1&device={}&userId={unknown}",
                "a".repeat(64)
            )
        );
        assert!(!text.contains("jane") && !text.contains("bob"));
    }

    #[test]
    fn representations_are_named() {
        assert_eq!(
            representation("text/csv; charset=utf-8").as_deref(),
            Some("csv")
        );
        assert_eq!(representation("application/json").as_deref(), Some("json"));
        assert_eq!(
            representation("application/x-ndjson").as_deref(),
            Some("ndjson")
        );
        assert_eq!(representation("").as_deref(), None);
    }
}
