//! Subscription filters: which publications a subscriber gets, decided by
//! the publication's tags on the node, before anything is queued.
//!
//! A filter arrives as the protocol's `Filter` message and is checked once,
//! at subscribe; what is kept is this compiled form, with numbers parsed and
//! the shape known to be valid, so evaluating it cannot fail.

use std::collections::HashMap;
use std::fmt;
use switchyard_proto::v1::Filter as FilterMessage;

/// Nodes (leaves and composites) one filter may have at most.
pub const MAX_NODES: usize = 64;
/// How deep composites may nest.
pub const MAX_DEPTH: usize = 8;
/// Values one `in`/`nin` leaf may list at most.
pub const MAX_VALUES: usize = 256;

/// A valid filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    Leaf { key: String, test: Test },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// What a leaf checks of its tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    Eq(String),
    Neq(String),
    In(Vec<String>),
    Nin(Vec<String>),
    Exists,
    Missing,
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    /// Numeric: the tag parsed as a number, against this one.
    Compare(Ordering, Number),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ordering {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// A finite number, kept by its bits so that filters can be compared and
/// hashed (the hub shares one evaluation between equal filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number(u64);

impl Number {
    fn parse(text: &str) -> Option<Number> {
        let value: f64 = text.trim().parse().ok()?;
        // -0.0 and 0.0 compare equal: one key for both.
        value.is_finite().then(|| Number((value + 0.0).to_bits()))
    }

    fn value(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// Why a filter was refused (the subscribe gets 107 with this message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFilter(String);

impl fmt::Display for InvalidFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter: {}", self.0)
    }
}

impl std::error::Error for InvalidFilter {}

fn invalid<T>(message: impl Into<String>) -> Result<T, InvalidFilter> {
    Err(InvalidFilter(message.into()))
}

impl Filter {
    /// Checks and compiles a filter as a client sent it.
    pub fn compile(message: &FilterMessage) -> Result<Filter, InvalidFilter> {
        let mut nodes = 0;
        compile(message, 1, &mut nodes)
    }

    /// Whether a publication with these tags passes.
    pub fn matches(&self, tags: &HashMap<String, String>) -> bool {
        match self {
            Filter::Leaf { key, test } => test.passes(tags.get(key).map(String::as_str)),
            Filter::And(nodes) => nodes.iter().all(|n| n.matches(tags)),
            Filter::Or(nodes) => nodes.iter().any(|n| n.matches(tags)),
            Filter::Not(node) => !node.matches(tags),
        }
    }
}

impl Test {
    fn passes(&self, tag: Option<&str>) -> bool {
        match (self, tag) {
            (Test::Exists, tag) => tag.is_some(),
            (Test::Missing, tag) => tag.is_none(),
            // Missing tags are unequal to anything and in no list.
            (Test::Neq(_) | Test::Nin(_), None) => true,
            (_, None) => false,
            (Test::Eq(v), Some(tag)) => tag == v,
            (Test::Neq(v), Some(tag)) => tag != v,
            (Test::In(vs), Some(tag)) => vs.iter().any(|v| v == tag),
            (Test::Nin(vs), Some(tag)) => !vs.iter().any(|v| v == tag),
            (Test::StartsWith(v), Some(tag)) => tag.starts_with(v.as_str()),
            (Test::EndsWith(v), Some(tag)) => tag.ends_with(v.as_str()),
            (Test::Contains(v), Some(tag)) => tag.contains(v.as_str()),
            (Test::Compare(ordering, number), Some(tag)) => {
                let Some(tag) = Number::parse(tag) else { return false };
                let (tag, value) = (tag.value(), number.value());
                match ordering {
                    Ordering::Lt => tag < value,
                    Ordering::Lte => tag <= value,
                    Ordering::Gt => tag > value,
                    Ordering::Gte => tag >= value,
                }
            }
        }
    }
}

fn compile(message: &FilterMessage, depth: usize, nodes: &mut usize) -> Result<Filter, InvalidFilter> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return invalid(format!("more than {MAX_NODES} nodes"));
    }
    if depth > MAX_DEPTH {
        return invalid(format!("nests deeper than {MAX_DEPTH}"));
    }
    let is_leaf = !message.cmp.is_empty() || !message.key.is_empty();
    match (is_leaf, message.op.as_str()) {
        (true, "") => {
            if !message.nodes.is_empty() {
                return invalid("a leaf (key, cmp) has no nodes");
            }
            leaf(message)
        }
        (true, _) => invalid("a node is a leaf (key, cmp) or a composite (op, nodes), not both"),
        (false, "") => invalid("a node needs key and cmp, or op and nodes"),
        (false, op) => {
            if !message.val.is_empty() || !message.vals.is_empty() {
                return invalid("a composite (op, nodes) has no val or vals");
            }
            let children = message.nodes.iter().map(|n| compile(n, depth + 1, nodes)).collect::<Result<Vec<_>, _>>()?;
            match op {
                "and" | "or" if children.is_empty() => invalid(format!("{op} needs at least one node")),
                "and" => Ok(Filter::And(children)),
                "or" => Ok(Filter::Or(children)),
                "not" => match <[Filter; 1]>::try_from(children) {
                    Ok([child]) => Ok(Filter::Not(Box::new(child))),
                    Err(_) => invalid("not takes exactly one node"),
                },
                other => invalid(format!("unknown op {other:?} (and, or, not)")),
            }
        }
    }
}

fn leaf(message: &FilterMessage) -> Result<Filter, InvalidFilter> {
    if message.key.is_empty() {
        return invalid("a leaf needs a key");
    }
    let cmp = message.cmp.as_str();
    let one = || -> Result<String, InvalidFilter> {
        if !message.vals.is_empty() {
            return invalid(format!("{cmp} takes val, not vals"));
        }
        Ok(message.val.clone())
    };
    let many = || -> Result<Vec<String>, InvalidFilter> {
        if !message.val.is_empty() {
            return invalid(format!("{cmp} takes vals, not val"));
        }
        if message.vals.len() > MAX_VALUES {
            return invalid(format!("more than {MAX_VALUES} vals"));
        }
        Ok(message.vals.clone())
    };
    let none = || -> Result<(), InvalidFilter> {
        if !message.val.is_empty() || !message.vals.is_empty() {
            return invalid(format!("{cmp} takes no value"));
        }
        Ok(())
    };
    let number = |ordering| -> Result<Test, InvalidFilter> {
        let text = one()?;
        match Number::parse(&text) {
            Some(number) => Ok(Test::Compare(ordering, number)),
            None => invalid(format!("{cmp} compares numbers: {text:?} is not one")),
        }
    };
    let test = match cmp {
        "eq" => Test::Eq(one()?),
        "neq" => Test::Neq(one()?),
        "in" => Test::In(many()?),
        "nin" => Test::Nin(many()?),
        "ex" => none().map(|()| Test::Exists)?,
        "nex" => none().map(|()| Test::Missing)?,
        "sw" => Test::StartsWith(one()?),
        "ew" => Test::EndsWith(one()?),
        "ct" => Test::Contains(one()?),
        "lt" => number(Ordering::Lt)?,
        "lte" => number(Ordering::Lte)?,
        "gt" => number(Ordering::Gt)?,
        "gte" => number(Ordering::Gte)?,
        "" => return invalid("a leaf needs cmp"),
        other => return invalid(format!("unknown cmp {other:?}")),
    };
    Ok(Filter::Leaf { key: message.key.clone(), test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Filter, InvalidFilter> {
        Filter::compile(&serde_json::from_str::<FilterMessage>(json).expect("a Filter message"))
    }

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_comparison() {
        let t = tags(&[("ticker", "BTC"), ("size", "12.5"), ("venue", "lse-main")]);
        let cases = [
            (r#"{"key":"ticker","cmp":"eq","val":"BTC"}"#, true),
            (r#"{"key":"ticker","cmp":"neq","val":"BTC"}"#, false),
            (r#"{"key":"ticker","cmp":"in","vals":["ETH","BTC"]}"#, true),
            (r#"{"key":"ticker","cmp":"nin","vals":["ETH","BTC"]}"#, false),
            (r#"{"key":"ticker","cmp":"ex"}"#, true),
            (r#"{"key":"other","cmp":"nex"}"#, true),
            (r#"{"key":"other","cmp":"neq","val":"x"}"#, true),
            (r#"{"key":"other","cmp":"eq","val":""}"#, false),
            (r#"{"key":"venue","cmp":"sw","val":"lse"}"#, true),
            (r#"{"key":"venue","cmp":"ew","val":"main"}"#, true),
            (r#"{"key":"venue","cmp":"ct","val":"e-m"}"#, true),
            (r#"{"key":"size","cmp":"gt","val":"10"}"#, true),
            (r#"{"key":"size","cmp":"gte","val":"12.5"}"#, true),
            (r#"{"key":"size","cmp":"lt","val":"12.5"}"#, false),
            (r#"{"key":"size","cmp":"lte","val":"1e2"}"#, true),
            (r#"{"key":"ticker","cmp":"lt","val":"1"}"#, false),
            (
                r#"{"op":"and","nodes":[{"key":"ticker","cmp":"eq","val":"BTC"},{"key":"size","cmp":"gte","val":"10"}]}"#,
                true,
            ),
            (
                r#"{"op":"or","nodes":[{"key":"ticker","cmp":"eq","val":"ETH"},{"key":"size","cmp":"gte","val":"20"}]}"#,
                false,
            ),
            (r#"{"op":"not","nodes":[{"key":"ticker","cmp":"eq","val":"ETH"}]}"#, true),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter).unwrap().matches(&t), expected, "{filter}");
        }
    }

    #[test]
    fn refuses_malformed_filters() {
        let deep = (0..MAX_DEPTH)
            .fold(r#"{"key":"a","cmp":"ex"}"#.to_string(), |inner, _| format!(r#"{{"op":"not","nodes":[{inner}]}}"#));
        let wide = format!(r#"{{"op":"or","nodes":[{}]}}"#, vec![r#"{"key":"a","cmp":"ex"}"#; MAX_NODES].join(","));
        for filter in [
            r#"{}"#,
            r#"{"key":"a"}"#,
            r#"{"cmp":"eq","val":"x"}"#,
            r#"{"key":"a","cmp":"like","val":"x"}"#,
            r#"{"key":"a","cmp":"in","val":"x"}"#,
            r#"{"key":"a","cmp":"eq","vals":["x"]}"#,
            r#"{"key":"a","cmp":"ex","val":"x"}"#,
            r#"{"key":"a","cmp":"gt","val":"ten"}"#,
            r#"{"key":"a","cmp":"gt","val":"NaN"}"#,
            r#"{"op":"xor","nodes":[{"key":"a","cmp":"ex"}]}"#,
            r#"{"op":"and","nodes":[]}"#,
            r#"{"op":"not","nodes":[{"key":"a","cmp":"ex"},{"key":"b","cmp":"ex"}]}"#,
            r#"{"op":"and","key":"a","cmp":"ex","nodes":[{"key":"a","cmp":"ex"}]}"#,
            &deep,
            &wide,
        ] {
            assert!(parse(filter).is_err(), "{filter}");
        }
    }

    #[test]
    fn equal_filters_are_one_key() {
        let a = parse(r#"{"key":"size","cmp":"gt","val":"10"}"#).unwrap();
        let b = parse(r#"{"key":"size","cmp":"gt","val":"10.0"}"#).unwrap();
        assert_eq!(a, b);
    }
}
