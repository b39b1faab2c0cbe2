//! The Grafana dashboard (`deploy/grafana/flashkart.json`) names only metrics the daemons
//! export: every metric in every panel's query and in the variables' queries is one the
//! cloud's or the edge's registry encodes (a counter as `_total`, a histogram as `_bucket`,
//! `_sum`, `_count`). A panel naming a metric that does not exist (renamed, never added,
//! mistyped) fails here instead of drawing an empty graph in production.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/flashkart.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The series names a registry's text exposes, from its `# TYPE` lines.
fn series_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Everything the cloud and an edge export. A labelled family is encoded only once it has a
/// series, so one of each is made first (through the same calls the daemons make); a family
/// added later and named by a panel fails here until it is made too, never the other way.
fn exported() -> BTreeSet<String> {
    use flashkart_cloud::metrics::{
        ChannelLabels, GatewayCallLabels, NotificationLabels, OpLabels, RequestLabels,
        StoreFiguresNow, StoreLabels,
    };
    let cloud = flashkart_cloud::metrics::Metrics::default();
    let store = StoreLabels { store: "s1".into() };
    cloud
        .requests
        .get_or_create(&RequestLabels {
            endpoint: "GET /metrics".into(),
            status: 200,
        })
        .inc();
    cloud.changes_received.get_or_create(&store).inc();
    cloud.changes_applied.get_or_create(&store).inc();
    cloud.batches_refused.get_or_create(&store).inc();
    cloud
        .gateway_calls
        .get_or_create(&GatewayCallLabels {
            op: "capture".into(),
            result: "ok".into(),
        })
        .inc();
    cloud
        .payment_backlog
        .get_or_create(&OpLabels {
            op: "capture".into(),
        })
        .set(1);
    cloud
        .notifications
        .get_or_create(&NotificationLabels {
            channel: "email".into(),
            kind: "delivered".into(),
            outcome: "sent".into(),
        })
        .inc();
    cloud
        .notifications_pending
        .get_or_create(&ChannelLabels {
            channel: "email".into(),
        })
        .set(1);
    cloud.set_business(
        &[StoreFiguresNow {
            store: "s1".into(),
            orders_by_state: vec![("ROUTED".into(), 1)],
            delivered_1h: 1,
            on_time_share_1h: Some(1.0),
            stock_outs: 1,
            low_stock: 1,
            sync_lag_s: Some(0.5),
        }],
        &[("s1".to_owned(), vec![30.0])].into_iter().collect(),
    );
    cloud.set_runtime();
    let projected = flashkart_cloud::readmodel::ChangeCounter::default();
    projected
        .per_table
        .get_or_create(&flashkart_cloud::readmodel::TableLabels {
            table: "orders".into(),
        })
        .inc();
    let registry = cloud.registry(&projected);
    let mut names = series_names(
        &flashkart_cloud::metrics::encode(&registry).unwrap_or_else(|e| panic!("cloud: {e}")),
    );
    let edge = flashkart_edge::metrics::Metrics::default();
    edge.http(
        "GET",
        "/api/v1/orders",
        200,
        std::time::Duration::from_millis(3),
    );
    edge.stock_move("pick");
    edge.order_change("status");
    edge.device_health("scanner-1", "scanner", true);
    edge.device_scan("scanner-1", "applied");
    edge.printer_faults("printer-1", 0);
    edge.sign_in_failure("bad_credentials");
    edge.print_job("printer-1", "printed");
    names.extend(series_names(
        &edge.encode().unwrap_or_else(|e| panic!("edge: {e}")),
    ));
    names
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    // Aggregation operators, which may be followed by `by (...)` rather than `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression reads: identifiers outside label matchers (`{...}`),
/// ranges (`[...]`), strings and grouping label lists, that are neither functions (followed
/// by `(`) nor keywords.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_group = true;
                } else if chars.get(next) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                    // A function, or a keyword.
                } else if !word.starts_with('$') {
                    names.push(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or a duration (`5m`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every (where, expression) the dashboard queries: panel targets, and the metric of each
/// `label_values(metric, label)` variable.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            found.push((format!("panel `{title}`"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        if let Some(rest) = query.trim().strip_prefix("label_values(") {
            let metric = rest.split([',', ')']).next().unwrap_or_default().trim();
            let metric = metric.split('{').next().unwrap_or_default();
            let name = variable["name"].as_str().unwrap_or("?");
            found.push((format!("variable `{name}`"), metric.to_owned()));
        }
    }
    found
}

/// The metrics `expr` names that `exported` does not have.
fn unknown(expr: &str, exported: &BTreeSet<String>) -> Vec<String> {
    metric_names(expr)
        .into_iter()
        .filter(|name| !exported.contains(name))
        .collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported = exported();
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut missing = Vec::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place} queries no metric: {expr}");
        for name in unknown(expr, &exported) {
            missing.push(format!("{place}: {name} (in {expr})"));
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard names metrics no registry exports:\n{}\nexported: {exported:#?}",
        missing.join("\n")
    );
}

#[test]
fn the_dashboard_is_an_importable_grafana_dashboard() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_i64().unwrap_or_default();
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("no variables"));
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "no DS_PROMETHEUS data source variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        assert!(ids.insert(panel["id"].as_i64()), "duplicate id: {panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {} does not use the data source variable",
            panel["title"]
        );
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            panel["title"]
        );
    }
}

#[test]
fn the_check_catches_a_metric_that_does_not_exist() {
    let exported = exported();
    assert_eq!(
        unknown(
            "sum by (store) (rate(flashkart_cloud_no_such_metric_total{store=~\"$store\"}[$__rate_interval]))",
            &exported
        ),
        ["flashkart_cloud_no_such_metric_total"]
    );
    // A counter is read as `_total`, a histogram by its buckets: the bare names are not series.
    assert_eq!(
        unknown("rate(flashkart_cloud_orders_placed[5m])", &exported),
        ["flashkart_cloud_orders_placed"]
    );
    assert_eq!(
        unknown(
            "histogram_quantile(0.95, sum by (le) (rate(flashkart_cloud_intake_seconds_bucket[5m])))",
            &exported
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        metric_names("count by (instance) (flashkart_edge_device_up == 0) or vector(0)"),
        ["flashkart_edge_device_up"]
    );
}
