//! Effective wstest spec files: the committed template with a free port, an
//! absolute report directory and an optional case filter.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::Result;

/// Derives the spec wstest runs from a committed template (`fuzzingclient.json`
/// with `servers[].url`, or `fuzzingserver.json` with `url`).
pub(crate) fn effective_spec(
    template: &Value,
    port: u16,
    outdir: &Path,
    cases: Option<&str>,
) -> Result<Value> {
    let mut spec = template.clone();
    let obj = spec
        .as_object_mut()
        .ok_or("the spec template is not a JSON object")?;
    if let Some(url) = obj.get_mut("url") {
        *url = Value::String(with_port(
            url.as_str().ok_or("`url` is not a string")?,
            port,
        )?);
    }
    if let Some(servers) = obj.get_mut("servers").and_then(Value::as_array_mut) {
        for server in servers {
            let url = server
                .get_mut("url")
                .ok_or("a `servers` entry has no `url`")?;
            *url = Value::String(with_port(
                url.as_str().ok_or("`url` is not a string")?,
                port,
            )?);
        }
    }
    let outdir = outdir.to_str().ok_or("the report directory is not UTF-8")?;
    obj.insert("outdir".to_owned(), json!(outdir));
    if let Some(pattern) = cases {
        let excluded: Vec<String> = obj
            .get("exclude-cases")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(group) = excluded.iter().find(|g| glob_match(g, pattern)) {
            return Err(format!(
                "--cases {pattern} only selects cases excluded by the spec template ({group})"
            )
            .into());
        }
        obj.insert("cases".to_owned(), json!([pattern]));
        // Keep the exclusions only when the pattern reaches into an excluded group.
        if !excluded.iter().any(|g| globs_overlap(g, pattern)) {
            obj.insert("exclude-cases".to_owned(), json!([]));
        }
    }
    Ok(spec)
}

/// `ws://host:9001/path` with the port replaced.
fn with_port(url: &str, port: u16) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rsplit_once(':') {
        Some((host, p)) if p.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    Ok(format!("{scheme}://{host}:{port}{path}"))
}

/// Autobahn case patterns: `*` matches any run of characters, all else is literal.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Whether some case id matches both patterns.
fn globs_overlap(a: &str, b: &str) -> bool {
    fn go(a: &[u8], b: &[u8]) -> bool {
        match (a.split_first(), b.split_first()) {
            (None, None) => true,
            (Some((b'*', a_rest)), _) => go(a_rest, b) || (!b.is_empty() && go(a, &b[1..])),
            (_, Some((b'*', b_rest))) => go(a, b_rest) || (!a.is_empty() && go(&a[1..], b)),
            (Some((x, a_rest)), Some((y, b_rest))) => x == y && go(a_rest, b_rest),
            _ => false,
        }
    }
    go(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_template() -> Value {
        json!({
            "outdir": "./reports/server",
            "servers": [{"agent": "sockeye", "url": "ws://127.0.0.1:9001"}],
            "cases": ["*"],
            "exclude-cases": ["12.*", "13.*"],
            "exclude-agent-cases": {}
        })
    }

    #[test]
    fn fuzzingclient_spec_gets_port_and_outdir() {
        let spec = effective_spec(&client_template(), 4242, Path::new("/r/server"), None).unwrap();
        assert_eq!(spec["servers"][0]["url"], "ws://127.0.0.1:4242");
        assert_eq!(spec["servers"][0]["agent"], "sockeye");
        assert_eq!(spec["outdir"], "/r/server");
        assert_eq!(spec["cases"], json!(["*"]));
        assert_eq!(spec["exclude-cases"], json!(["12.*", "13.*"]));
    }

    #[test]
    fn fuzzingserver_spec_gets_port() {
        let template = json!({"url": "ws://127.0.0.1:9001", "outdir": "x", "cases": ["*"]});
        let spec = effective_spec(&template, 1, Path::new("/o"), None).unwrap();
        assert_eq!(spec["url"], "ws://127.0.0.1:1");
        assert_eq!(spec["outdir"], "/o");
    }

    #[test]
    fn case_filter_narrows_and_drops_unrelated_exclusions() {
        let spec = effective_spec(&client_template(), 1, Path::new("/o"), Some("1.*")).unwrap();
        assert_eq!(spec["cases"], json!(["1.*"]));
        assert_eq!(spec["exclude-cases"], json!([]));
        let spec = effective_spec(&client_template(), 1, Path::new("/o"), Some("6.4.3")).unwrap();
        assert_eq!(spec["cases"], json!(["6.4.3"]));
        assert_eq!(spec["exclude-cases"], json!([]));
    }

    #[test]
    fn case_filter_keeps_exclusions_it_reaches_into() {
        for pattern in ["*", "1*", "*.1"] {
            let spec = effective_spec(&client_template(), 1, Path::new("/o"), Some(pattern));
            assert_eq!(
                spec.unwrap()["exclude-cases"],
                json!(["12.*", "13.*"]),
                "{pattern}"
            );
        }
    }

    #[test]
    fn case_filter_inside_an_excluded_group_is_an_error() {
        for pattern in ["12.*", "12.1.1", "13.2.*"] {
            assert!(effective_spec(&client_template(), 1, Path::new("/o"), Some(pattern)).is_err());
        }
    }

    #[test]
    fn port_replacement() {
        assert_eq!(with_port("ws://h:9001", 5).unwrap(), "ws://h:5");
        assert_eq!(with_port("ws://h", 5).unwrap(), "ws://h:5");
        assert_eq!(with_port("ws://h:1/p?q", 5).unwrap(), "ws://h:5/p?q");
        assert_eq!(with_port("ws://[::1]:9", 5).unwrap(), "ws://[::1]:5");
        assert!(with_port("h:9001", 5).is_err());
    }

    #[test]
    fn globbing() {
        assert!(glob_match("*", "1.1.1"));
        assert!(glob_match("1.*", "1.1.10"));
        assert!(!glob_match("1.*", "10.1.1"));
        assert!(glob_match("6.4.3", "6.4.3"));
        assert!(!glob_match("6.4.3", "6.4.30"));
        assert!(globs_overlap("12.*", "1*"));
        assert!(globs_overlap("12.*", "*.1"));
        assert!(!globs_overlap("12.*", "1.*"));
        assert!(!globs_overlap("12.*", "6.4.3"));
    }
}
