//! `deploy/monitoring` against the operator: the dashboard is valid JSON, and
//! it and the alerts query only metrics the operator exports (by the
//! registry's own output, so a renamed metric fails here, not on a 3 a.m.
//! dashboard); every alert has a summary, a description, a runbook that
//! exists in docs/operations.md and a promtool test. promtool itself runs in
//! `cargo xtask manifests`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use keeper_operator::metrics::Metrics;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every metric name in the registry's output: described (`# TYPE`) and
/// sampled (a counter's `_total`, a histogram's `_bucket`, …).
fn exported() -> BTreeSet<String> {
    let text = Metrics::default().encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(described) = line.strip_prefix("# TYPE ") {
            names.extend(described.split(' ').next().map(str::to_owned));
        } else if !line.starts_with('#') {
            names.extend(
                line.split(['{', ' '])
                    .next()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    names
}

const KEYWORDS: [&str; 10] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
];

/// The metric names a PromQL expression reads: identifiers outside quotes,
/// label matchers (`{…}`) and ranges (`[…]`) that are not functions (followed
/// by `(`) or keywords. Enough for the expressions of deploy/monitoring,
/// which group by nothing.
fn metric_names(expr: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut depth = 0u32;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 => plain.push(c),
            (None, _) => {}
        }
        if depth > 0 || quote.is_some() {
            // Keep the token boundary where the matcher or string was.
            if !plain.ends_with(' ') {
                plain.push(' ');
            }
        }
    }
    let mut names = Vec::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let preceded_by_dollar = start > 0 && chars[start - 1] == '$';
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if next != Some(&'(') && !preceded_by_dollar && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number (or a duration such as 5m): skip it whole.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_expression_scanner_finds_metrics_and_only_metrics() {
    assert_eq!(
        metric_names(
            r#"changes(keeper_backup_last_success_timestamp_seconds{namespace=~"$namespace"}[$__interval]) * 1000"#
        ),
        ["keeper_backup_last_success_timestamp_seconds"]
    );
    assert_eq!(
        metric_names("absent(keeper_leader == 1) and on up"),
        ["keeper_leader", "up"]
    );
    assert_eq!(
        metric_names("keeper_backup_deadline_timestamp_seconds < time()"),
        ["keeper_backup_deadline_timestamp_seconds"]
    );
}

/// Every `expr` in a Grafana dashboard's panels (rows included).
fn dashboard_exprs(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
        dashboard_exprs(&panel["panels"], out);
    }
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let exported = exported();
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/monitoring/keeper-dashboard.json"))
            .expect("the dashboard is valid JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 8, "every panel queries something: {exprs:?}");
    // The template variables read their label values from a metric too.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["definition"].as_str() {
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.split(',').next())
                .unwrap_or_else(|| panic!("a label_values query: {query}"));
            exprs.push(inner.to_owned());
        }
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "reads no metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {expr}) is not exported by the operator; exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // What the issue asks the dashboard to show.
    for shown in [
        "keeper_backup_last_success_timestamp_seconds",
        "keeper_backup_last_success_size_bytes",
        "keeper_backup_last_success_duration_seconds",
        "keeper_backup_last_success_lock_seconds",
        "keeper_backup_last_failure_timestamp_seconds",
        "keeper_backup_consecutive_failures",
        "keeper_backup_next_run_timestamp_seconds",
    ] {
        assert!(used.contains(shown), "the dashboard does not show {shown}");
    }
}

/// The anchors GitHub gives the headings of a Markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| line.starts_with('#'))
        })
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_reads_exported_metrics_and_has_a_runbook_and_a_test() {
    let exported = exported();
    let rule: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("deploy/monitoring/prometheus_rule.yaml"))
            .expect("valid YAML");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let runbooks = anchors(&repo_file("docs/operations.md"));
    let tests = repo_file("deploy/monitoring/tests/keeper-alerts.test.yaml");
    let mut alerts = Vec::new();
    for group in rule["spec"]["groups"].as_sequence().expect("groups") {
        for alert in group["rules"].as_sequence().expect("rules") {
            let name = alert["alert"].as_str().expect("only alerting rules");
            alerts.push(name.to_owned());
            let expr = alert["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{name} reads no metric");
            for metric in names {
                assert!(
                    exported.contains(&metric),
                    "{name}: {metric} is not exported by the operator"
                );
            }
            let annotations = &alert["annotations"];
            for key in ["summary", "description"] {
                assert!(
                    annotations[key]
                        .as_str()
                        .is_some_and(|s| !s.trim().is_empty()),
                    "{name} has no {key}"
                );
            }
            let url = annotations["runbook_url"].as_str().expect("runbook_url");
            let anchor = url
                .strip_prefix(
                    "https://github.com/mysql-keeper/mysql-keeper/blob/main/docs/operations.md#",
                )
                .unwrap_or_else(|| panic!("{name}: runbook_url outside docs/operations.md: {url}"));
            assert!(
                runbooks.contains(anchor),
                "{name}: docs/operations.md has no heading #{anchor}"
            );
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "{name} has no promtool test in deploy/monitoring/tests"
            );
            assert!(alert["labels"]["severity"].is_string(), "{name}: severity");
        }
    }
    assert_eq!(
        alerts,
        [
            "KeeperBackupOverdue",
            "KeeperBackupFailed",
            "KeeperBackupVerificationFailed",
            "KeeperOperatorAbsent"
        ]
    );
}
