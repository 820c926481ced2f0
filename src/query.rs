//! Query strings of the REST API, parsed once into named parameters.
//!
//! Invariants: every refusal is a 400 (`1001` BadMessage) whose message names the parameter:
//! an unknown parameter, one given twice, or a value that is not what the parameter takes
//! (`from: "abc" is not a non-negative integer`).

use std::str::FromStr;

use coedit_protocol::ErrorCode;

use crate::http::ApiError;

/// A request's query parameters, checked against the names an endpoint takes.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `qs`, refusing names outside `allowed` and names given twice.
    pub fn parse(qs: &str, allowed: &[&str]) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(qs)
            .map_err(|e| bad(format!("the query string is not URL-encoded pairs: {e}")))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(bad(format!(
                    "unknown query parameter {name:?} (this endpoint takes {})",
                    allowed.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(bad(format!("query parameter {name:?} is given twice")));
            }
        }
        Ok(Query { pairs })
    }

    /// The raw value of `name`.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as a non-negative integer, if given.
    pub fn uint<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.str(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    let v: String = v.chars().take(40).collect();
                    bad(format!("{name}: {v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::new(ErrorCode::BadMessage, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn values_and_errors_name_the_parameter() {
        let q = Query::parse("from=5&limit=10", &["from", "to", "limit"]).unwrap();
        assert_eq!(q.uint::<u64>("from").unwrap(), Some(5));
        assert_eq!(q.uint::<u64>("to").unwrap(), None);
        assert_eq!(q.uint::<usize>("limit").unwrap(), Some(10));
        let q = Query::parse("from=abc", &["from"]).unwrap();
        assert!(msg(q.uint::<u64>("from").unwrap_err()).starts_with("from: \"abc\""));
        let q = Query::parse("from=-1", &["from"]).unwrap();
        assert!(msg(q.uint::<u64>("from").unwrap_err()).contains("from"));
        let e = Query::parse("form=1", &["from", "to"]).err().unwrap();
        assert!(msg(e).contains("unknown query parameter \"form\""));
        let e = Query::parse("from=1&from=2", &["from"]).err().unwrap();
        assert!(msg(e).contains("\"from\" is given twice"));
    }
}
