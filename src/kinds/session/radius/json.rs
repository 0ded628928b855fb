//! Reading accounting requests out of a JSON body without building a
//! `serde_json::Value` per request. A request is the list of its attribute
//! names (borrowed from the body unless they hold an escape) with the JSON
//! text of each value; only the values of attributes the service reads are
//! ever parsed, and then into borrowed text or an integer. NAS vendors send
//! dozens of attributes acctstream ignores: they cost one scan, no
//! allocation.

use std::{borrow::Cow, fmt};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{value::RawValue, Map, Value};

/// One request's attributes, in body order (a repeated name is kept twice;
/// readers let the later one win, as a JSON object read into a map does).
#[derive(Debug, Default)]
pub struct Object<'a> {
    attributes: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// The attributes, names with their values' JSON text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.attributes
            .iter()
            .map(|(name, raw)| (name.as_ref(), *raw))
    }

    /// The request as a JSON object (for the quarantine, which stores it).
    /// A value that `serde_json::Value` cannot hold (a number beyond
    /// `f64`) is kept as its text.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        for (name, raw) in self.iter() {
            let value = serde_json::from_str(raw.get())
                .unwrap_or_else(|_| Value::String(raw.get().to_owned()));
            map.insert(name.to_owned(), value);
        }
        Value::Object(map)
    }
}

/// An attribute name, borrowed when the body spells it without escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

fn read_object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Object<'de>, A::Error> {
    let mut attributes = Vec::with_capacity(map.size_hint().unwrap_or(16));
    while let Some((Name(name), raw)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
        attributes.push((name, raw));
    }
    Ok(Object { attributes })
}

/// Any JSON value, kept only when it is an object.
pub(super) enum Item<'a> {
    /// An object: a request.
    Object(Object<'a>),
    /// An array of values (only at the top of a body).
    Array(Vec<Item<'a>>),
    /// Anything else.
    Other,
}

/// Reads objects and, at the top only, arrays; skips everything else.
struct ItemVisitor {
    top: bool,
}

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item<'de>, A::Error> {
        read_object(map).map(Item::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item<'de>, A::Error> {
        if !self.top {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Item::Other);
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Element<'de>>()? {
            items.push(item.0);
        }
        Ok(Item::Array(items))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
    fn visit_unit<E>(self) -> Result<Item<'de>, E> {
        Ok(Item::Other)
    }
}

/// A body's top value.
pub(super) struct Top<'a>(pub(super) Item<'a>);

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ItemVisitor { top: true })
            .map(Top)
    }
}

/// An element of a top array.
struct Element<'a>(Item<'a>);

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ItemVisitor { top: false })
            .map(Element)
    }
}

/// The first element of an array (the rest are only checked).
struct First<'a>(Option<&'a RawValue>);

impl<'de> Deserialize<'de> for First<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor;
        impl<'de> Visitor<'de> for FirstVisitor {
            type Value = First<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<'de>, A::Error> {
                let first = seq.next_element::<&'de RawValue>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        deserializer.deserialize_seq(FirstVisitor)
    }
}

/// A value as the readers of attributes see it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Leaf<'a> {
    /// `null`, or an empty array.
    Null,
    /// A string, unescaped.
    Text(Cow<'a, str>),
    /// A number that is an integer `i64` can hold.
    Integer(i64),
    /// Another number.
    OtherNumber,
    /// `true`, `false`, an object or an array within an array.
    Other,
    /// An object (only as an attribute's value: `rlm_rest`'s form).
    Object,
}

/// What one value's JSON text holds (its first element, for an array).
pub(super) fn leaf(raw: &RawValue) -> Leaf<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<&str>(text) {
            Ok(s) => Leaf::Text(Cow::Borrowed(s)),
            Err(_) => serde_json::from_str::<String>(text)
                .map(|s| Leaf::Text(Cow::Owned(s)))
                .unwrap_or(Leaf::Other),
        },
        Some(b'n') => Leaf::Null,
        Some(b'-' | b'0'..=b'9') => match text.parse::<i64>() {
            Ok(n) => Leaf::Integer(n),
            Err(_) => Leaf::OtherNumber,
        },
        Some(b'{') => Leaf::Object,
        Some(b'[') => match serde_json::from_str::<First<'_>>(text) {
            Ok(First(None)) => Leaf::Null,
            Ok(First(Some(first))) if first.get().starts_with(['[', '{']) => Leaf::Other,
            Ok(First(Some(first))) => leaf(first),
            Err(_) => Leaf::Other,
        },
        _ => Leaf::Other,
    }
}

/// The `value` member of an object (`rlm_rest`'s `{"type":…,"value":[…]}`),
/// `None` when it has none (or the text is no object).
pub(super) fn rest_value(raw: &RawValue) -> Option<&RawValue> {
    match serde_json::from_str::<Element<'_>>(raw.get()) {
        Ok(Element(Item::Object(object))) => object
            .iter()
            .filter(|(name, _)| *name == "value")
            .last()
            .map(|(_, value)| value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn leaves_are_read_borrowed_when_they_can_be() {
        assert_eq!(leaf(raw(r#""bob""#)), Leaf::Text(Cow::Borrowed("bob")));
        assert!(matches!(leaf(raw(r#""a\"b""#)), Leaf::Text(Cow::Owned(s)) if s == "a\"b"));
        assert_eq!(leaf(raw("-12")), Leaf::Integer(-12));
        assert_eq!(leaf(raw("9223372036854775808")), Leaf::OtherNumber);
        assert_eq!(leaf(raw("1.5")), Leaf::OtherNumber);
        assert_eq!(leaf(raw("1e3")), Leaf::OtherNumber);
        assert_eq!(leaf(raw("null")), Leaf::Null);
        assert_eq!(leaf(raw("[]")), Leaf::Null);
        assert_eq!(leaf(raw(r#"["x", 2, {}]"#)), Leaf::Text(Cow::Borrowed("x")));
        assert_eq!(leaf(raw("[[1]]")), Leaf::Other);
        assert_eq!(leaf(raw("[{}]")), Leaf::Other);
        assert_eq!(leaf(raw("true")), Leaf::Other);
        assert_eq!(leaf(raw(r#"{"value":1}"#)), Leaf::Object);
    }

    #[test]
    fn rest_values_are_found_by_their_member() {
        let form = raw(r#"{"type":"string","value":["bob"]}"#);
        assert_eq!(rest_value(form).map(RawValue::get), Some(r#"["bob"]"#));
        assert!(rest_value(raw(r#"{"type":"string"}"#)).is_none());
        assert_eq!(
            rest_value(raw(r#"{"value":1,"value":2}"#)).map(RawValue::get),
            Some("2")
        );
    }

    #[test]
    fn objects_go_back_to_json_values() {
        let Top(Item::Object(object)) =
            serde_json::from_str::<Top<'_>>(r#"{"a\u0041":[1,"x"],"b":1e400,"c":null}"#).unwrap()
        else {
            panic!("an object")
        };
        assert_eq!(
            object.to_value(),
            serde_json::json!({"aA": [1, "x"], "b": "1e400", "c": null})
        );
    }
}
