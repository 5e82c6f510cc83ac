//! Autobahn results: parsing wstest's `index.json`, the summary, and the
//! committed expected results (`expected-results-*.json`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::util::Result;

/// A case id such as `6.4.3`, ordered by its numeric components (`1.1.9` < `1.1.10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaseId(pub(crate) String);

impl Ord for CaseId {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut left = self.0.split('.');
        let mut right = other.0.split('.');
        loop {
            let ord = match (left.next(), right.next()) {
                (None, None) => return self.0.cmp(&other.0),
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => a.cmp(b),
                },
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
    }
}

impl PartialOrd for CaseId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What Autobahn concluded about one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) behavior: String,
    pub(crate) behavior_close: String,
}

impl Outcome {
    /// `OK` and `INFORMATIONAL` pass; `NON-STRICT`, `UNIMPLEMENTED`, `FAILED`, ... fail.
    pub(crate) fn passed(&self) -> bool {
        let ok = |b: &str| b == "OK" || b == "INFORMATIONAL";
        ok(&self.behavior) && ok(&self.behavior_close)
    }

    fn from_json(case: &str, value: &Value) -> Result<Self> {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("case {case}: missing string field `{name}`"))
        };
        Ok(Outcome {
            behavior: field("behavior")?,
            behavior_close: field("behaviorClose")?,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "behavior {}, behaviorClose {}",
            self.behavior, self.behavior_close
        )
    }
}

/// One row of `index.json`.
#[derive(Clone, Debug)]
pub(crate) struct CaseResult {
    pub(crate) outcome: Outcome,
    pub(crate) report_file: Option<String>,
}

pub(crate) type Results = BTreeMap<CaseId, CaseResult>;
pub(crate) type Outcomes = BTreeMap<CaseId, Outcome>;

/// Parses `{ "<agent>": { "<case>": { "behavior": .., "behaviorClose": .., "reportfile": .. } } }`.
pub(crate) fn parse_index(json: &str, agent: &str) -> Result<Results> {
    let index: Value = serde_json::from_str(json).map_err(|e| format!("bad index.json: {e}"))?;
    let agents = index.as_object().ok_or("index.json is not an object")?;
    let cases = agents
        .get(agent)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            let found: Vec<&str> = agents.keys().map(String::as_str).collect();
            if found.is_empty() {
                "index.json has no results: no case ran (did wstest reach the peer?)".to_owned()
            } else {
                format!("index.json has no results for agent `{agent}` (found: {found:?})")
            }
        })?;
    let mut results = Results::new();
    for (id, value) in cases {
        let result = CaseResult {
            outcome: Outcome::from_json(id, value)?,
            report_file: value
                .get("reportfile")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        results.insert(CaseId(id.clone()), result);
    }
    Ok(results)
}

/// The ids of the cases that did not pass.
pub(crate) fn failing(results: &Results) -> Vec<&CaseId> {
    results
        .iter()
        .filter(|(_, r)| !r.outcome.passed())
        .map(|(id, _)| id)
        .collect()
}

/// Counts per behavior value plus one line per case that did not pass.
pub(crate) fn summary(results: &Results, report_dir: &str) -> String {
    let count = |pick: fn(&Outcome) -> &str| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in results.values() {
            *counts.entry(pick(&r.outcome)).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(b, n)| format!("{b} {n}")).collect();
        parts.join(", ")
    };
    let mut out = format!(
        "{} cases\n  behavior:      {}\n  behaviorClose: {}\n",
        results.len(),
        count(|o| &o.behavior),
        count(|o| &o.behavior_close),
    );
    for (id, r) in results.iter().filter(|(_, r)| !r.outcome.passed()) {
        let file = r.report_file.as_deref().unwrap_or("?");
        out.push_str(&format!(
            "  case {id}: {} (see {report_dir}/{file})\n",
            r.outcome
        ));
    }
    out
}

/// The outcomes alone, as stored in the expected-results file.
pub(crate) fn outcomes(results: &Results) -> Outcomes {
    results
        .iter()
        .map(|(id, r)| (id.clone(), r.outcome.clone()))
        .collect()
}

/// Parses an expected-results file: `{ "1.1.1": {"behavior": "OK", "behaviorClose": "OK"}, ... }`.
pub(crate) fn parse_expected(json: &str) -> Result<Outcomes> {
    let value: Value = serde_json::from_str(json)?;
    let cases = value
        .as_object()
        .ok_or("expected results are not an object")?;
    cases
        .iter()
        .map(|(id, v)| Ok((CaseId(id.clone()), Outcome::from_json(id, v)?)))
        .collect()
}

/// Renders an expected-results file, one case per line in numeric case order.
pub(crate) fn render_expected(outcomes: &Outcomes) -> String {
    let quote = |s: &str| Value::from(s).to_string();
    let lines: Vec<String> = outcomes
        .iter()
        .map(|(id, o)| {
            format!(
                "  {}: {{\"behavior\": {}, \"behaviorClose\": {}}}",
                quote(&id.0),
                quote(&o.behavior),
                quote(&o.behavior_close)
            )
        })
        .collect();
    if lines.is_empty() {
        "{}\n".to_owned()
    } else {
        format!("{{\n{}\n}}\n", lines.join(",\n"))
    }
}

/// Every difference between the expected and the actual outcomes.
pub(crate) fn diff(expected: &Outcomes, actual: &Outcomes) -> Vec<String> {
    let mut ids: Vec<&CaseId> = expected.keys().chain(actual.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| match (expected.get(id), actual.get(id)) {
            (Some(e), None) => Some(format!("case {id}: expected ({e}) but it did not run")),
            (None, Some(a)) => Some(format!("case {id}: not in expected results (got {a})")),
            (Some(e), Some(a)) if e != a => Some(format!("case {id}: expected {e}; got {a}")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "sockeye": {
        "1.1.1": {"behavior": "OK", "behaviorClose": "OK", "duration": 2,
                  "remoteCloseCode": 1000, "reportfile": "sockeye_case_1_1_1.json"},
        "6.4.3": {"behavior": "NON-STRICT", "behaviorClose": "OK", "duration": 2010,
                  "remoteCloseCode": 1007, "reportfile": "sockeye_case_6_4_3.json"},
        "7.1.6": {"behavior": "INFORMATIONAL", "behaviorClose": "INFORMATIONAL", "duration": 3,
                  "remoteCloseCode": null, "reportfile": "sockeye_case_7_1_6.json"},
        "7.13.2": {"behavior": "OK", "behaviorClose": "FAILED", "duration": 1,
                  "remoteCloseCode": null, "reportfile": "sockeye_case_7_13_2.json"},
        "5.1": {"behavior": "UNIMPLEMENTED", "behaviorClose": "UNIMPLEMENTED", "duration": 1,
                  "remoteCloseCode": null, "reportfile": "sockeye_case_5_1.json"}
      }
    }"#;

    fn id(s: &str) -> CaseId {
        CaseId(s.to_owned())
    }

    fn outcome(b: &str, c: &str) -> Outcome {
        Outcome {
            behavior: b.to_owned(),
            behavior_close: c.to_owned(),
        }
    }

    #[test]
    fn index_is_parsed_and_failures_detected() {
        let results = parse_index(INDEX, "sockeye").unwrap();
        assert_eq!(results.len(), 5);
        assert_eq!(results[&id("6.4.3")].outcome, outcome("NON-STRICT", "OK"));
        assert_eq!(
            results[&id("1.1.1")].report_file.as_deref(),
            Some("sockeye_case_1_1_1.json")
        );
        let failing: Vec<&str> = failing(&results).iter().map(|c| c.0.as_str()).collect();
        assert_eq!(failing, ["5.1", "6.4.3", "7.13.2"]);
    }

    #[test]
    fn index_errors_are_clear() {
        let err = parse_index(INDEX, "other").unwrap_err().to_string();
        assert!(err.contains("sockeye"), "{err}");
        assert!(parse_index(r#"{"a": {"1.1.1": {"behavior": "OK"}}}"#, "a").is_err());
        assert!(parse_index("not json", "a").is_err());
    }

    #[test]
    fn summary_counts_and_lists_failures() {
        let results = parse_index(INDEX, "sockeye").unwrap();
        let text = summary(&results, "autobahn/reports/server");
        assert!(
            text.contains("behavior:      INFORMATIONAL 1, NON-STRICT 1, OK 2, UNIMPLEMENTED 1")
        );
        assert!(text.contains(
            "case 6.4.3: behavior NON-STRICT, behaviorClose OK \
             (see autobahn/reports/server/sockeye_case_6_4_3.json)"
        ));
        assert!(!text.contains("case 7.1.6"));
        assert!(!text.contains("case 1.1.1"));
    }

    #[test]
    fn case_ids_sort_numerically() {
        let mut ids: Vec<CaseId> = [
            "1.1.10", "10.1.1", "1.1.9", "2.1", "1.1.1", "9.7.10", "9.7.9",
        ]
        .into_iter()
        .map(id)
        .collect();
        ids.sort();
        let sorted: Vec<&str> = ids.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            sorted,
            [
                "1.1.1", "1.1.9", "1.1.10", "2.1", "9.7.9", "9.7.10", "10.1.1"
            ]
        );
        assert!(id("1.1") < id("1.1.1"));
        assert_ne!(id("1.01").cmp(&id("1.1")), Ordering::Equal);
    }

    #[test]
    fn expected_results_round_trip_in_numeric_order() {
        let results = parse_index(INDEX, "sockeye").unwrap();
        let text = render_expected(&outcomes(&results));
        let first = text.find("\"1.1.1\"").unwrap();
        let five = text.find("\"5.1\"").unwrap();
        let seven = text.find("\"7.1.6\"").unwrap();
        let seven13 = text.find("\"7.13.2\"").unwrap();
        assert!(first < five && five < seven && seven < seven13);
        assert_eq!(parse_expected(&text).unwrap(), outcomes(&results));
        assert_eq!(render_expected(&Outcomes::new()), "{}\n");
    }

    #[test]
    fn diff_reports_missing_extra_and_changed() {
        let expected: Outcomes = [
            (id("1.1.1"), outcome("OK", "OK")),
            (id("1.1.2"), outcome("OK", "OK")),
            (id("6.4.3"), outcome("OK", "OK")),
        ]
        .into();
        let actual: Outcomes = [
            (id("1.1.1"), outcome("OK", "OK")),
            (id("6.4.3"), outcome("NON-STRICT", "OK")),
            (id("9.1.1"), outcome("OK", "OK")),
        ]
        .into();
        assert_eq!(
            diff(&expected, &actual),
            [
                "case 1.1.2: expected (behavior OK, behaviorClose OK) but it did not run",
                "case 6.4.3: expected behavior OK, behaviorClose OK; \
                 got behavior NON-STRICT, behaviorClose OK",
                "case 9.1.1: not in expected results (got behavior OK, behaviorClose OK)",
            ]
        );
        assert!(diff(&expected, &expected).is_empty());
    }
}
