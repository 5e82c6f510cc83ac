//! sockeye's own metrics for the charts: the monitor's process (its
//! recorder, [`Source::Local`]) or another sockeye server's `/metrics`
//! (`--scrape URL`, e.g. `chat --metrics 127.0.0.1:9100`), read once a
//! second from the Prometheus text format and summed over labels. Counters
//! become per-second rates between two readings; gauges are shown as read.

use std::time::{Duration, Instant};

use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// A scrape that takes longer than this is a failed sample.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// A `/metrics` page larger than this is refused (sockeye's is a few KiB).
const MAX_PAGE: usize = 4 << 20;

/// Where the figures come from.
pub(crate) enum Source {
    /// This process's recorder.
    Local(PrometheusHandle),
    /// Another process's `/metrics`, over plain HTTP/1.1.
    Remote(Uri),
}

impl Source {
    /// A remote source, checked once at startup.
    pub(crate) fn remote(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--scrape {url}: not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!("--scrape {url}: expected http://HOST:PORT/PATH"));
        }
        Ok(Source::Remote(uri))
    }

    fn describe(&self) -> String {
        match self {
            Source::Local(_) => "this process".to_owned(),
            Source::Remote(uri) => uri.to_string(),
        }
    }

    async fn read(&self) -> Result<String, String> {
        match self {
            Source::Local(handle) => {
                // The exporter's histograms need this once in a while.
                handle.run_upkeep();
                Ok(handle.render())
            }
            Source::Remote(uri) => tokio::time::timeout(SCRAPE_TIMEOUT, scrape(uri))
                .await
                .map_err(|_| format!("no answer within {SCRAPE_TIMEOUT:?}"))?,
        }
    }
}

/// One GET of `uri` on a fresh connection.
async fn scrape(uri: &Uri) -> Result<String, String> {
    let authority = uri.authority().ok_or("no host in the URL")?;
    let addr = match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    };
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_PAGE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the page is not UTF-8".to_owned())
}

/// The figures the page charts, each summed over all its labels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    // Gauges.
    sockets: f64,
    sessions: f64,
    queued_bytes: f64,
    // Counters.
    messages_in: f64,
    messages_out: f64,
    bytes_in: f64,
    bytes_out: f64,
    publications: f64,
    deliveries: f64,
    closes: f64,
    rejections: f64,
    drops: f64,
}

impl Totals {
    /// Reads the sockeye series of a Prometheus text page.
    fn from_page(page: &str) -> Self {
        let mut t = Totals::default();
        for (name, labels, value) in page.lines().filter_map(sample) {
            let inbound = label(labels, "direction") == Some("in");
            let slot = match name {
                "sockeye_sockets_open" => &mut t.sockets,
                "sockeye_pubsub_sessions" => &mut t.sessions,
                "sockeye_pubsub_queued_bytes" => &mut t.queued_bytes,
                "sockeye_messages_total" if inbound => &mut t.messages_in,
                "sockeye_messages_total" => &mut t.messages_out,
                "sockeye_payload_bytes_total" if inbound => &mut t.bytes_in,
                "sockeye_payload_bytes_total" => &mut t.bytes_out,
                "sockeye_pubsub_publications_total" => &mut t.publications,
                "sockeye_pubsub_deliveries_total" => &mut t.deliveries,
                "sockeye_socket_closes_total" => &mut t.closes,
                "sockeye_handshake_rejections_total" => &mut t.rejections,
                "sockeye_pubsub_drops_total" => &mut t.drops,
                _ => continue,
            };
            *slot += value;
        }
        t
    }
}

/// One sample line of the text format, `name{labels} value [timestamp]`,
/// as (name, labels without braces, value); comments and blank lines give
/// `None`.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, "", rest)
        }
    };
    let value = rest.split_ascii_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The value of one label. sockeye's label values are short fixed words
/// (no commas, quotes or escapes), which is all this handles.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// Turns successive readings into one JSON object per sample.
pub(crate) struct Reader {
    source: Source,
    previous: Option<(Instant, Totals)>,
}

impl Reader {
    pub(crate) fn new(source: Source) -> Self {
        Reader {
            source,
            previous: None,
        }
    }

    /// The next figures: gauges now and counters per second since the last
    /// reading (`null` rates on the first one), or the failure.
    pub(crate) async fn next(&mut self) -> Value {
        let source = self.source.describe();
        match self.source.read().await {
            Ok(page) => {
                let now = Instant::now();
                let totals = Totals::from_page(&page);
                let figures = figures(&source, totals, self.previous, now);
                self.previous = Some((now, totals));
                figures
            }
            Err(error) => {
                // A gap in the chart, and rates start over.
                self.previous = None;
                json!({ "source": source, "error": error })
            }
        }
    }
}

fn figures(source: &str, now: Totals, previous: Option<(Instant, Totals)>, at: Instant) -> Value {
    let rate = |current: f64, before: fn(&Totals) -> f64| -> Value {
        match previous {
            Some((then, prev)) => {
                let secs = at.duration_since(then).as_secs_f64();
                // A restarted process starts its counters over.
                let delta = (current - before(&prev)).max(0.0);
                if secs > 0.0 {
                    json!((delta / secs * 10.0).round() / 10.0)
                } else {
                    Value::Null
                }
            }
            None => Value::Null,
        }
    };
    json!({
        "source": source,
        "sockets": now.sockets,
        "sessions": now.sessions,
        "queued_bytes": now.queued_bytes,
        "messages_in": rate(now.messages_in, |t| t.messages_in),
        "messages_out": rate(now.messages_out, |t| t.messages_out),
        "bytes_in": rate(now.bytes_in, |t| t.bytes_in),
        "bytes_out": rate(now.bytes_out, |t| t.bytes_out),
        "publications": rate(now.publications, |t| t.publications),
        "deliveries": rate(now.deliveries, |t| t.deliveries),
        "closes": rate(now.closes, |t| t.closes),
        "rejections": rate(now.rejections, |t| t.rejections),
        "drops": rate(now.drops, |t| t.drops),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# TYPE sockeye_messages_total counter
sockeye_messages_total{role=\"server\",direction=\"in\",kind=\"text\"} 10
sockeye_messages_total{role=\"server\",direction=\"in\",kind=\"binary\"} 5
sockeye_messages_total{role=\"server\",direction=\"out\",kind=\"text\"} 40
sockeye_payload_bytes_total{role=\"server\",direction=\"out\"} 4096

# TYPE sockeye_sockets_open gauge
sockeye_sockets_open{role=\"server\"} 3
sockeye_pubsub_sessions 2
sockeye_socket_closes_total{role=\"server\",code=\"1000\",initiator=\"peer\"} 7 1732670000123
other_total 99
";

    #[test]
    fn the_page_is_summed_over_labels() {
        let t = Totals::from_page(PAGE);
        assert_eq!(t.messages_in, 15.0);
        assert_eq!(t.messages_out, 40.0);
        assert_eq!(t.bytes_out, 4096.0);
        assert_eq!(t.bytes_in, 0.0);
        assert_eq!(t.sockets, 3.0);
        assert_eq!(t.sessions, 2.0);
        assert_eq!(t.closes, 7.0);
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        assert_eq!(sample("# HELP x y"), None);
        assert_eq!(sample("   "), None);
        assert_eq!(sample("x{a=\"b\""), None);
        assert_eq!(sample("x{a=\"b\"} NaNx"), None);
        assert_eq!(sample("x 1.5"), Some(("x", "", 1.5)));
        assert_eq!(label("a=\"1\", b=\"2\"", "b"), Some("2"));
        assert_eq!(label("a=\"1\"", "c"), None);
    }

    #[test]
    fn counters_become_rates_and_a_restart_is_not_negative() {
        let t0 = Instant::now();
        let before = Totals {
            messages_in: 100.0,
            closes: 50.0,
            ..Totals::default()
        };
        let after = Totals {
            messages_in: 300.0,
            closes: 1.0,
            sockets: 4.0,
            ..Totals::default()
        };
        let first = figures("x", before, None, t0);
        assert_eq!(first["messages_in"], Value::Null);
        let next = figures("x", after, Some((t0, before)), t0 + Duration::from_secs(2));
        assert_eq!(next["messages_in"], json!(100.0));
        assert_eq!(next["closes"], json!(0.0));
        assert_eq!(next["sockets"], json!(4.0));
    }

    #[tokio::test]
    async fn the_local_recorder_is_read() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::gauge!("sockeye_sockets_open", "role" => "server").set(2.0);
            metrics::counter!("sockeye_pubsub_deliveries_total").increment(5);
        });
        let mut reader = Reader::new(Source::Local(handle));
        let first = reader.next().await;
        assert_eq!(first["sockets"], json!(2.0));
        assert_eq!(first["deliveries"], Value::Null);
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("sockeye_pubsub_deliveries_total").increment(5);
        });
        let second = reader.next().await;
        assert!(
            second["deliveries"].as_f64().is_some_and(|r| r > 0.0),
            "{second}"
        );
    }

    #[tokio::test]
    async fn a_failed_scrape_is_reported_not_fatal() {
        // Nothing listens on port 1.
        let mut reader = Reader::new(Source::remote("http://127.0.0.1:1/metrics").unwrap());
        let figures = reader.next().await;
        assert!(figures["error"].as_str().is_some(), "{figures}");
        assert!(Source::remote("https://x/metrics").is_err());
        assert!(Source::remote("not a url").is_err());
    }
}
