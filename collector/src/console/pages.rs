//! The console's pages, server-rendered HTML: Fleet, Compliance, Host,
//! Drift, Rule, Baselines, and the stylesheet and script they load. Every
//! agent-supplied string goes through [`super::escape`]; every list also
//! answers `?format=csv|json` with the rows it shows (all of them, not one
//! page).

use super::escape::{csv, html, query_value, segment};
use super::{Console, Params, Reply, User};
use crate::queries::{self, Format, age, details, rfc3339, score, short_time};
use crate::storage::{self, DriftFilter, EventRow, HostRow, StorageError, host_matches};
use hyper::StatusCode;
use hyper::header;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Drift counted on the fleet page: the last 24 h (as `hosts` counts it).
const DRIFT_WINDOW_SECS: i64 = 86_400;
/// Events of one host read for its page (newest first).
const HOST_EVENTS: usize = 2_000;
/// Failing hosts whose evidence the rule page looks up.
const RULE_HOSTS: usize = 500;

/// One page's context.
struct Ctx<'a> {
    c: &'a Console,
    user: &'a User,
    p: &'a Params,
    now: i64,
}

pub(super) fn route(
    c: &Console,
    user: &User,
    path: &str,
    p: &Params,
) -> Result<Reply, StorageError> {
    let ctx = Ctx {
        c,
        user,
        p,
        now: super::now(),
    };
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    match path {
        "/assets/console.css" => Ok(Reply::new("text/css; charset=utf-8", CSS)),
        "/assets/console.js" => Ok(Reply::new("text/javascript; charset=utf-8", JS)),
        "/" | "/fleet" => fleet(&ctx),
        "/compliance" => compliance(&ctx),
        "/drift" => drift(&ctx),
        "/baselines" => baselines(&ctx),
        p if p.starts_with("/hosts/") => host(&ctx, &decoded(&p["/hosts/".len()..])),
        p if p.starts_with("/rules/") => rule(&ctx, &decoded(&p["/rules/".len()..])),
        _ => Ok(Reply::error(StatusCode::NOT_FOUND, false, "no such page")),
    }
}

/// The page around `body`.
fn layout(ctx: &Ctx<'_>, title: &str, body: &str) -> Reply {
    let who = match &ctx.user.via {
        Some(proxy) => format!("{} (via {})", html(&ctx.user.name), html(proxy)),
        None => html(&ctx.user.name),
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Plumbline</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head>\n<body>\
         <header><nav><strong>Plumbline</strong> \
         <a href=\"/fleet\">Fleet</a> <a href=\"/compliance\">Compliance</a> \
         <a href=\"/drift\">Drift</a> <a href=\"/baselines\">Baselines</a></nav>\
         <span class=\"who\">signed in as {who}</span></header>\n<main>\n<h1>{title}</h1>\n{body}</main>\n\
         <footer>Generated {at} (UTC)</footer></body></html>\n",
        title = html(title),
        at = html(&short_time(ctx.now)),
    );
    Reply::new("text/html; charset=utf-8", page)
}

/// `?format=csv|json` for a list: the rows as CSV, or `json`.
fn export(
    ctx: &Ctx<'_>,
    name: &str,
    header: &[&str],
    rows: &[Vec<String>],
    json: Value,
) -> Option<Reply> {
    let mut r = match ctx.p.get("format")? {
        "csv" => Reply::new("text/csv; charset=utf-8", csv(header, rows)),
        "json" => Reply::json(queries_json(&json)),
        _ => return None,
    };
    let ext = if r.content_type.starts_with("text/csv") {
        "csv"
    } else {
        "json"
    };
    r.headers.push((
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}.{ext}\""),
    ));
    Some(r)
}

fn queries_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// The export links of a list, keeping its filters.
fn export_links(base: &str, query: &str) -> String {
    let sep = if query.is_empty() { "" } else { "&amp;" };
    format!(
        "<p class=\"exports\">Export: <a href=\"{base}?{query}{sep}format=csv\">CSV</a> \
         <a href=\"{base}?{query}{sep}format=json\">JSON</a></p>\n"
    )
}

/// `a=1&b=2` of the given (non-empty) values, escaped for an attribute.
fn query_of(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", query_value(v))))
        .collect::<Vec<_>>()
        .join("&amp;")
}

fn host_link(host: &str) -> String {
    format!("<a href=\"/hosts/{}\">{}</a>", segment(host), html(host))
}

fn rule_link(rule: &str) -> String {
    format!("<a href=\"/rules/{}\">{}</a>", segment(rule), html(rule))
}

fn score_text(h: &HostRow) -> String {
    score(h).map_or_else(|| "-".into(), |s| format!("{s:.1}"))
}

fn baseline_text(h: &HostRow) -> String {
    match (&h.baseline_id, h.baseline_version) {
        (Some(id), Some(v)) => format!("{id}@{v}"),
        (Some(id), None) => id.clone(),
        _ => "-".into(),
    }
}

fn stale(ctx: &Ctx<'_>, h: &HostRow) -> bool {
    ctx.now - h.last_seen >= i64::try_from(ctx.c.stale_after).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------- fleet

fn fleet(ctx: &Ctx<'_>) -> Result<Reply, StorageError> {
    let mut query = fleet_query(ctx);
    if ctx.p.get("format").is_some() {
        // Every host the filters keep, not one page.
        let all = ctx.c.queries.host_page(&query)?;
        if let Some(r) = fleet_export(ctx, &all.rows) {
            return Ok(r);
        }
    }
    let per = ctx.c.page_size.max(1);
    let asked = ctx
        .p
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    query.limit = Some(per);
    query.offset = (asked - 1).saturating_mul(per);
    let mut page = ctx.c.queries.host_page(&query)?;
    let pages = usize::try_from(page.matched)
        .unwrap_or(usize::MAX)
        .div_ceil(per)
        .max(1);
    let n = asked.min(pages);
    if n != asked {
        // Past the last page: the last one.
        query.offset = (n - 1) * per;
        page = ctx.c.queries.host_page(&query)?;
    }
    let mut b = String::new();
    fleet_filters(ctx, &mut b);
    let _ = writeln!(
        b,
        "<p class=\"summary\">{} hosts, {} stale (unseen for {}), {} failing a rule.</p>",
        page.matched,
        page.stale,
        age(i64::try_from(ctx.c.stale_after).unwrap_or(i64::MAX)),
        page.failing
    );
    let filters = fleet_filters_query(ctx);
    b.push_str(&export_links("/fleet", &filters));
    fleet_table(ctx, &mut b, &page.rows, &filters);
    fleet_pager(ctx, &mut b, n, pages, &filters);
    Ok(layout(ctx, "Fleet", &b))
}

/// The fleet page's filters and order, from its parameters.
fn fleet_query(ctx: &Ctx<'_>) -> storage::HostQuery {
    use storage::{HostSort, HostStatus};
    storage::HostQuery {
        glob: ctx.p.get("q").map(String::from),
        status: match ctx.p.get("status") {
            Some("failing") => HostStatus::Failing,
            Some("passing") => HostStatus::Passing,
            Some("stale") => HostStatus::Stale,
            Some("fresh") => HostStatus::Fresh,
            _ => HostStatus::All,
        },
        sort: match ctx.p.get("sort") {
            Some("score") => HostSort::Score,
            Some("fail") => HostSort::Fail,
            Some("drift") => HostSort::Drift,
            Some("seen") => HostSort::Seen,
            Some("agent") => HostSort::Agent,
            _ => HostSort::Host,
        },
        desc: ctx.p.get("dir") == Some("desc"),
        stale_before: ctx
            .now
            .saturating_sub(i64::try_from(ctx.c.stale_after).unwrap_or(i64::MAX)),
        drift_since: ctx.now - DRIFT_WINDOW_SECS,
        limit: None,
        offset: 0,
    }
}

/// The fleet's `?format=csv|json`.
fn fleet_export(ctx: &Ctx<'_>, rows: &[HostRow]) -> Option<Reply> {
    let header = [
        "host",
        "score",
        "failing_rules",
        "drift_24h",
        "last_seen",
        "stale",
        "agent_version",
        "baseline",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                score_text(h),
                h.fail.to_string(),
                h.drift_recent.to_string(),
                rfc3339(h.last_seen),
                stale(ctx, h).to_string(),
                h.agent_version.clone().unwrap_or_default(),
                baseline_text(h),
            ]
        })
        .collect();
    let as_json = json!({
        "hosts": rows.iter().map(|h| json!({
            "host": h.host, "score": score(h), "failing_rules": h.fail,
            "drift_24h": h.drift_recent, "last_seen": rfc3339(h.last_seen),
            "stale": stale(ctx, h), "agent_version": h.agent_version,
            "baseline": h.baseline_id.as_ref().map(|id| json!({"id": id, "version": h.baseline_version})),
        })).collect::<Vec<_>>()
    });
    export(ctx, "fleet", &header, &cells, as_json)
}

/// `q` and `status` as given (for links that keep them).
fn fleet_filters_query(ctx: &Ctx<'_>) -> String {
    let status = ctx.p.get("status").filter(|s| *s != "all");
    query_of(&[("q", ctx.p.get("q")), ("status", status)])
}

/// The filter form.
fn fleet_filters(ctx: &Ctx<'_>, b: &mut String) {
    let status = ctx.p.get("status").unwrap_or("all");
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/fleet\" class=\"filters\">\
         <label>Host <input name=\"q\" value=\"{}\" placeholder=\"web-*\"></label> \
         <label>Status <select name=\"status\" data-autosubmit>",
        html(ctx.p.get("q").unwrap_or(""))
    );
    for s in ["all", "failing", "passing", "stale", "fresh"] {
        let sel = if s == status { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{s}\"{sel}>{s}</option>");
    }
    b.push_str("</select></label> <button type=\"submit\">Filter</button></form>\n");
}

/// The table of one page of hosts, its headers sorting links.
fn fleet_table(ctx: &Ctx<'_>, b: &mut String, rows: &[HostRow], filters: &str) {
    let sort = ctx.p.get("sort").unwrap_or("host");
    let desc = ctx.p.get("dir") == Some("desc");
    b.push_str("<table id=\"fleet\"><thead><tr>");
    for (key, label) in [
        ("host", "Host"),
        ("score", "Score"),
        ("fail", "Failing rules"),
        ("drift", "Drift 24 h"),
        ("seen", "Last seen"),
        ("agent", "Agent"),
    ] {
        let dir = if sort == key && !desc { "desc" } else { "asc" };
        let mark = match (sort == key, desc) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        let sep = if filters.is_empty() { "" } else { "&amp;" };
        let _ = write!(
            b,
            "<th><a href=\"/fleet?{filters}{sep}sort={key}&amp;dir={dir}\">{label}</a>{mark}</th>"
        );
    }
    b.push_str("<th>Baseline</th></tr></thead>\n<tbody>\n");
    for h in rows {
        let seen = if stale(ctx, h) {
            format!(
                "{} ago <span class=\"stale\">STALE</span>",
                age(ctx.now - h.last_seen)
            )
        } else {
            format!("{} ago", age(ctx.now - h.last_seen))
        };
        let class = if h.fail > 0 { " class=\"failing\"" } else { "" };
        let _ = writeln!(
            b,
            "<tr{class}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td title=\"{}\">{seen}</td><td>{}</td><td>{}</td></tr>",
            host_link(&h.host),
            score_text(h),
            h.fail,
            h.drift_recent,
            html(&rfc3339(h.last_seen)),
            html(h.agent_version.as_deref().unwrap_or("-")),
            html(&baseline_text(h)),
        );
    }
    b.push_str("</tbody></table>\n");
}

/// "Page n of pages" with the previous and next links.
fn fleet_pager(ctx: &Ctx<'_>, b: &mut String, page: usize, pages: usize, filters: &str) {
    let sort_q = format!(
        "sort={}&amp;dir={}",
        query_value(ctx.p.get("sort").unwrap_or("host")),
        if ctx.p.get("dir") == Some("desc") {
            "desc"
        } else {
            "asc"
        }
    );
    let sep = if filters.is_empty() { "" } else { "&amp;" };
    let _ = write!(b, "<p class=\"pages\">Page {page} of {pages}");
    if page > 1 {
        let _ = write!(
            b,
            " <a rel=\"prev\" href=\"/fleet?{filters}{sep}{sort_q}&amp;page={}\">previous</a>",
            page - 1
        );
    }
    if page < pages {
        let _ = write!(
            b,
            " <a rel=\"next\" href=\"/fleet?{filters}{sep}{sort_q}&amp;page={}\">next</a>",
            page + 1
        );
    }
    b.push_str("</p>\n");
}

// ------------------------------------------------------------ compliance

fn compliance(ctx: &Ctx<'_>) -> Result<Reply, StorageError> {
    let (out, _) = queries::report(ctx.c.queries.as_ref(), Format::Json)?;
    let report: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let domains = report["domains"].as_array().cloned().unwrap_or_default();
    let header = [
        "domain",
        "name",
        "hosts_passing",
        "hosts_failing",
        "hosts_error",
        "worst_rules",
    ];
    let num = |v: &Value| v.as_u64().unwrap_or(0).to_string();
    let cells: Vec<Vec<String>> = domains
        .iter()
        .map(|d| {
            let worst: Vec<String> = d["worst_rules"]
                .as_array()
                .map(|w| {
                    w.iter()
                        .map(|r| {
                            format!(
                                "{} ({})",
                                r["rule"].as_str().unwrap_or("?"),
                                num(&r["hosts_failing"])
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                num(&d["domain"]),
                d["name"].as_str().unwrap_or("").to_string(),
                num(&d["hosts_passing"]),
                num(&d["hosts_failing"]),
                num(&d["hosts_error"]),
                worst.join("; "),
            ]
        })
        .collect();
    if let Some(r) = export(ctx, "compliance", &header, &cells, report.clone()) {
        return Ok(r);
    }
    let today = ctx.now.div_euclid(86_400);
    let history = ctx.c.queries.score_history(today - (HISTORY_DAYS - 1))?;
    let mut b = String::new();
    b.push_str(&score_chart(&history, today));
    let _ = writeln!(
        b,
        "<p class=\"summary\">{} hosts, {} failing at least one rule.</p>",
        num(&report["hosts"]),
        num(&report["hosts_failing"])
    );
    b.push_str(&export_links("/compliance", ""));
    b.push_str(
        "<table id=\"compliance\"><thead><tr><th>#</th><th>ISSP domain</th><th>Passing</th>\
         <th>Failing</th><th>Error</th><th>Worst rules (hosts failing)</th></tr></thead><tbody>\n",
    );
    for d in &domains {
        let worst: Vec<String> = d["worst_rules"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|r| {
                        format!(
                            "{} ({})",
                            rule_link(r["rule"].as_str().unwrap_or("?")),
                            num(&r["hosts_failing"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            num(&d["domain"]),
            html(d["name"].as_str().unwrap_or("(unknown domain)")),
            num(&d["hosts_passing"]),
            num(&d["hosts_failing"]),
            num(&d["hosts_error"]),
            worst.join(", ")
        );
    }
    b.push_str("</tbody></table>\n");
    Ok(layout(ctx, "Compliance", &b))
}

/// Days the compliance chart shows.
const HISTORY_DAYS: i64 = 30;

/// The fleet score of the last [`HISTORY_DAYS`] days (through `today`) as
/// an inline SVG drawn here: a line through the days that have snapshots, a
/// dot per day, 0–100 on the vertical axis. Presentation through the
/// stylesheet's classes (the CSP allows no inline style).
fn score_chart(history: &[storage::DailyScore], today: i64) -> String {
    const W: f64 = 640.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 36.0;
    const BOTTOM: f64 = 20.0;
    let first = today - (HISTORY_DAYS - 1);
    let x = |day: i64| LEFT + (day - first) as f64 * (W - LEFT - 8.0) / (HISTORY_DAYS - 1) as f64;
    let y = |score: f64| 8.0 + (100.0 - score.clamp(0.0, 100.0)) * (H - BOTTOM - 8.0) / 100.0;
    let mut s = format!(
        "<h2>Fleet score, last {HISTORY_DAYS} days</h2>\n<svg class=\"chart\" id=\"score-history\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"fleet score per day\">"
    );
    for v in [0.0, 50.0, 100.0] {
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"2\" y=\"{:.1}\">{v}</text>",
            W - 8.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (day, label) in [
        (first, short_time(first * 86_400)),
        (today, short_time(today * 86_400)),
    ] {
        let _ = write!(
            s,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\">{}</text>",
            (x(day) - 30.0).max(0.0),
            H - 4.0,
            html(label.get(..10).unwrap_or(&label))
        );
    }
    let points: Vec<String> = history
        .iter()
        .filter(|d| d.day >= first && d.day <= today)
        .map(|d| format!("{:.1},{:.1}", x(d.day), y(d.score)))
        .collect();
    if points.len() > 1 {
        let _ = write!(
            s,
            "<polyline class=\"line\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    for d in history.iter().filter(|d| d.day >= first && d.day <= today) {
        let _ = write!(
            s,
            "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}: {:.1} ({} snapshots)</title></circle>",
            x(d.day),
            y(d.score),
            html(short_time(d.day * 86_400).get(..10).unwrap_or("")),
            d.score,
            d.samples
        );
    }
    s.push_str("</svg>\n");
    if history.is_empty() {
        s.push_str("<p class=\"note\">No snapshot stored in the last 30 days.</p>\n");
    }
    s
}

// ------------------------------------------------------------------ host

/// The newest `check_changed` of each rule among `events` (newest first).
fn evidence_by_rule(events: &[EventRow]) -> BTreeMap<String, &EventRow> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "check_changed") {
        if let Some(rule) = e.body.get("rule").and_then(Value::as_str) {
            out.entry(rule.to_string()).or_insert(e);
        }
    }
    out
}

fn evidence_lines(e: &EventRow) -> Vec<String> {
    e.body
        .get("evidence")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn host(ctx: &Ctx<'_>, name: &str) -> Result<Reply, StorageError> {
    let name = storage::canonical_host(name);
    let q = ctx.c.queries.as_ref();
    // This host's row, rule statuses and recent events only.
    let Some(h) = q.host(&name, ctx.now - DRIFT_WINDOW_SECS)? else {
        return Ok(Reply::error(StatusCode::NOT_FOUND, false, "no such host"));
    };
    let rules = q.host_rule_statuses(&name)?;
    let events = q.host_events(&name, HOST_EVENTS)?;
    let evidence = evidence_by_rule(&events);
    if let Some(r) = host_export(ctx, &name, &rules, &evidence) {
        return Ok(r);
    }
    let mut b = String::new();
    host_summary(ctx, &mut b, &h);
    b.push_str(&export_links(&format!("/hosts/{}", segment(&name)), ""));
    host_facts(&mut b, events.iter().find(|e| e.kind == "snapshot"));
    host_rules(&mut b, &rules, &evidence);
    host_fim(&mut b, &events);
    host_remediation(&mut b, &events);
    Ok(layout(ctx, &format!("Host {name}"), &b))
}

/// A host's `?format=csv|json`: its rule statuses with their evidence.
fn host_export(
    ctx: &Ctx<'_>,
    name: &str,
    rules: &[storage::RuleStatusRow],
    evidence: &BTreeMap<String, &EventRow>,
) -> Option<Reply> {
    let header = ["rule", "status", "severity", "domains", "title", "evidence"];
    let cells: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.rule.clone(),
                r.status.name().to_string(),
                r.severity.name().to_string(),
                r.domains
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                r.title.clone(),
                evidence
                    .get(&r.rule)
                    .map(|e| evidence_lines(e).join("\n"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let as_json = json!({
        "host": name,
        "rules": rules.iter().map(|r| json!({
            "rule": r.rule, "status": r.status.name(), "severity": r.severity.name(),
            "domains": r.domains, "title": r.title,
            "evidence": evidence.get(&r.rule).map(|e| evidence_lines(e)).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    });
    export(
        ctx,
        &format!("host-{}", segment(name)),
        &header,
        &cells,
        as_json,
    )
}

/// The host's figures: score, rule counts, last report, versions.
fn host_summary(ctx: &Ctx<'_>, b: &mut String, h: &HostRow) {
    let stale_mark = if stale(ctx, h) {
        " <span class=\"stale\">STALE</span>"
    } else {
        ""
    };
    let _ = writeln!(
        b,
        "<dl class=\"facts\"><dt>Score</dt><dd>{}</dd><dt>Rules</dt><dd>{} pass, {} fail, {} error, {} skipped</dd>\
         <dt>Last report</dt><dd>{} ({} ago){stale_mark}</dd><dt>First seen</dt><dd>{}</dd>\
         <dt>Address</dt><dd>{}</dd><dt>Agent</dt><dd>{}</dd><dt>Baseline in force</dt><dd>{}</dd>\
         <dt>FIM database digest</dt><dd>{}</dd></dl>",
        score_text(h),
        h.pass,
        h.fail,
        h.error,
        h.skipped,
        html(&rfc3339(h.last_seen)),
        age(ctx.now - h.last_seen),
        html(&rfc3339(h.first_seen)),
        html(h.address.as_deref().unwrap_or("-")),
        html(h.agent_version.as_deref().unwrap_or("-")),
        html(&baseline_text(h)),
        html(h.fim_digest.as_deref().unwrap_or("-")),
    );
}

/// Facts, as the last snapshot among the recent events gave them.
fn host_facts(b: &mut String, snapshot: Option<&EventRow>) {
    b.push_str("<h2>Facts</h2>\n");
    match snapshot
        .and_then(|s| s.body.get("facts"))
        .and_then(Value::as_object)
    {
        Some(facts) => {
            b.push_str("<dl class=\"facts\" id=\"host-facts\">");
            for (k, v) in facts {
                let _ = write!(b, "<dt>{}</dt><dd>{}</dd>", html(k), html(&show(v)));
            }
            let _ = writeln!(
                b,
                "</dl><p class=\"note\">From the snapshot of {}.</p>",
                html(&rfc3339(snapshot.map_or(0, |s| s.time)))
            );
        }
        None => b.push_str("<p class=\"note\">No snapshot among the host's recent events.</p>\n"),
    }
}

/// Every rule's status, grouped by ISSP domain, with its evidence.
fn host_rules(
    b: &mut String,
    rules: &[storage::RuleStatusRow],
    evidence: &BTreeMap<String, &EventRow>,
) {
    b.push_str("<h2>Rules by ISSP domain</h2>\n");
    if rules.is_empty() {
        b.push_str("<p class=\"note\">No rule status stored for this host yet.</p>\n");
    }
    let mut by_domain: BTreeMap<Option<u8>, Vec<&storage::RuleStatusRow>> = BTreeMap::new();
    for r in rules {
        if r.domains.is_empty() {
            by_domain.entry(None).or_default().push(r);
        }
        for d in &r.domains {
            by_domain.entry(Some(*d)).or_default().push(r);
        }
    }
    for (d, rs) in &by_domain {
        let title = match d {
            Some(d) => format!(
                "{d}. {}",
                plumb_core::issp::domain_name(*d).unwrap_or("(unknown domain)")
            ),
            None => "No domain".into(),
        };
        let _ = writeln!(
            b,
            "<h3>{}</h3>\n<table class=\"rules\"><thead><tr><th>Rule</th><th>Status</th>\
             <th>Severity</th><th>Title</th><th>Evidence</th></tr></thead><tbody>",
            html(&title)
        );
        for r in rs {
            let ev = match evidence.get(&r.rule) {
                Some(e) => {
                    let lines = evidence_lines(e);
                    if lines.is_empty() {
                        "<span class=\"note\">none given</span>".to_string()
                    } else {
                        let items: Vec<String> = lines
                            .iter()
                            .map(|l| format!("<li>{}</li>", html(l)))
                            .collect();
                        format!("<ul>{}</ul>", items.concat())
                    }
                }
                None => "<span class=\"note\">not among the recent events</span>".into(),
            };
            let _ = writeln!(
                b,
                "<tr class=\"status-{s}\"><td>{}</td><td>{s}</td><td>{}</td><td>{}</td><td>{ev}</td></tr>",
                rule_link(&r.rule),
                r.severity.name(),
                html(&r.title),
                s = r.status.name(),
            );
        }
        b.push_str("</tbody></table>\n");
    }
}

/// File integrity changes as a timeline, newest first, with field diffs.
fn host_fim(b: &mut String, events: &[EventRow]) {
    b.push_str("<h2>File integrity changes</h2>\n<ol class=\"timeline\" id=\"fim\">\n");
    let mut any = false;
    for e in events
        .iter()
        .filter(|e| e.kind == "fim_change" || e.kind == "fim_tamper")
    {
        any = true;
        let (head, _) = details(e);
        let _ = write!(
            b,
            "<li><time>{}</time> <span class=\"sev-{}\">{}</span> <code>{}</code>",
            html(&short_time(e.time)),
            html(&e.severity),
            html(&e.severity),
            html(&head)
        );
        // The exact bytes of a path that is not UTF-8 (lossless).
        if let Some(hex) = e
            .body
            .get("path")
            .and_then(|p| p.get("hex"))
            .and_then(Value::as_str)
        {
            let _ = write!(b, " <span class=\"hex\">bytes {}</span>", html(hex));
        }
        let fields: Vec<&str> = e
            .body
            .get("fields")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !fields.is_empty() {
            b.push_str(
                "<table class=\"diff\"><tr><th>Field</th><th>Before</th><th>After</th></tr>",
            );
            for f in fields {
                let old = e
                    .body
                    .get("old")
                    .and_then(|o| o.get(f))
                    .unwrap_or(&Value::Null);
                let new = e
                    .body
                    .get("new")
                    .and_then(|o| o.get(f))
                    .unwrap_or(&Value::Null);
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    html(f),
                    html(&show(old)),
                    html(&show(new))
                );
            }
            b.push_str("</table>");
        }
        if e.kind == "fim_tamper" {
            for l in e
                .body
                .get("detail")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let _ = write!(b, "<div>{}</div>", html(&show(l)));
            }
        }
        b.push_str("</li>\n");
    }
    if !any {
        b.push_str("<li class=\"note\">No file change among the recent events.</li>\n");
    }
    b.push_str("</ol>\n");
}

/// Remediation events with their rollback ids.
fn host_remediation(b: &mut String, events: &[EventRow]) {
    b.push_str("<h2>Remediation</h2>\n");
    let rem: Vec<&EventRow> = events.iter().filter(|e| e.kind == "remediation").collect();
    if rem.is_empty() {
        b.push_str("<p class=\"note\">No remediation among the recent events.</p>\n");
    } else {
        b.push_str(
            "<table id=\"remediation\"><thead><tr><th>Time</th><th>Rule</th><th>Action</th>\
             <th>Result</th><th>Rollback id</th><th>Changes</th></tr></thead><tbody>\n",
        );
        for e in rem {
            let s = |k: &str| e.body.get(k).map(show).unwrap_or_default();
            let changes: Vec<String> = e
                .body
                .get("changes")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .map(|x| format!("<li>{}</li>", html(&show(x))))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><ul>{}</ul></td></tr>",
                html(&short_time(e.time)),
                rule_link(&s("rule")),
                html(&s("action")),
                html(&s("result")),
                html(&s("rollback_id")),
                changes.concat()
            );
        }
        b.push_str("</tbody></table>\n");
    }
}

// ----------------------------------------------------------------- drift

fn drift(ctx: &Ctx<'_>) -> Result<Reply, StorageError> {
    let f = DriftPage {
        glob: ctx.p.get("host"),
        kind: ctx.p.get("kind"),
        severity: ctx.p.get("severity"),
        since_text: ctx.p.get("since"),
    };
    let since = match f.since_text.map(|s| queries::parse_since(s, ctx.now)) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Ok(Reply::error(StatusCode::BAD_REQUEST, false, &e.to_string())),
        None => None,
    };
    let per = ctx.c.page_size;
    let limit = ctx
        .p
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(per)
        .clamp(1, per * 10);
    let rows = drift_rows(ctx, &f, since, limit)?;
    if let Some(r) = drift_export(ctx, &rows) {
        return Ok(r);
    }
    let mut b = String::new();
    drift_filters(&mut b, &f);
    let filters = query_of(&[
        ("host", f.glob),
        ("kind", f.kind),
        ("severity", f.severity),
        ("since", f.since_text),
    ]);
    b.push_str(&export_links("/drift", &filters));
    drift_table(&mut b, &rows);
    if rows.len() == limit {
        let sep = if filters.is_empty() { "" } else { "&amp;" };
        let _ = writeln!(
            b,
            "<p class=\"pages\">First {limit} shown: <a href=\"/drift?{filters}{sep}limit={}\">show more</a></p>",
            (limit * 2).min(per * 10)
        );
    }
    Ok(layout(ctx, "Drift", &b))
}

/// The drift page's filters, as given.
struct DriftPage<'a> {
    glob: Option<&'a str>,
    kind: Option<&'a str>,
    severity: Option<&'a str>,
    since_text: Option<&'a str>,
}

/// The newest `limit` drift events the filters keep.
fn drift_rows(
    ctx: &Ctx<'_>,
    f: &DriftPage<'_>,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<EventRow>, StorageError> {
    let (glob, kind) = (f.glob, f.kind);
    let exact = glob.filter(|g| !g.contains(['*', '?']));
    // A glob or a kind is applied to a bounded read of the newest events.
    let filtered = exact.is_none() && glob.is_some() || kind.is_some();
    let filter = DriftFilter {
        host: exact.map(storage::canonical_host),
        since,
        min_severity: f.severity.and_then(super::severity_rank),
        limit: if filtered { limit * 10 } else { limit },
    };
    let mut rows = ctx.c.queries.drift(&filter)?;
    rows.retain(|e| {
        glob.is_none_or(|g| host_matches(g, &e.host)) && kind.is_none_or(|k| e.kind == k)
    });
    rows.truncate(limit);
    Ok(rows)
}

/// The drift list's `?format=csv|json`.
fn drift_export(ctx: &Ctx<'_>, rows: &[EventRow]) -> Option<Reply> {
    let header = ["time", "host", "kind", "severity", "summary", "details"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            let (head, lines) = details(e);
            vec![
                rfc3339(e.time),
                e.host.clone(),
                e.kind.clone(),
                e.severity.clone(),
                head,
                lines.join("\n"),
            ]
        })
        .collect();
    let as_json = json!({"events": rows.iter().map(|e| json!({
        "host": e.host, "seq": e.seq, "kind": e.kind, "severity": e.severity,
        "time": rfc3339(e.time), "received_at": rfc3339(e.received_at), "event": e.body,
    })).collect::<Vec<_>>()});
    export(ctx, "drift", &header, &cells, as_json)
}

/// The filter form.
fn drift_filters(b: &mut String, f: &DriftPage<'_>) {
    let (glob, kind, severity, since_text) = (f.glob, f.kind, f.severity, f.since_text);
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/drift\" class=\"filters\">\
         <label>Host <input name=\"host\" value=\"{}\" placeholder=\"web-*\"></label> \
         <label>Kind <select name=\"kind\" data-autosubmit><option value=\"\">any</option>",
        html(glob.unwrap_or(""))
    );
    for k in ["check_changed", "fim_change", "fim_tamper"] {
        let sel = if Some(k) == kind { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{k}\"{sel}>{k}</option>");
    }
    b.push_str("</select></label> <label>Severity at least <select name=\"severity\" data-autosubmit><option value=\"\">any</option>");
    for s in ["info", "low", "medium", "high", "critical"] {
        let sel = if Some(s) == severity { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{s}\"{sel}>{s}</option>");
    }
    let _ = writeln!(
        b,
        "</select></label> <label>Since <input name=\"since\" value=\"{}\" placeholder=\"24h\"></label> \
         <button type=\"submit\">Filter</button></form>",
        html(since_text.unwrap_or(""))
    );
}

/// The events, newest first, each with what changed.
fn drift_table(b: &mut String, rows: &[EventRow]) {
    b.push_str(
        "<table id=\"drift\"><thead><tr><th>Time</th><th>Severity</th><th>Host</th><th>Kind</th>\
         <th>What</th></tr></thead><tbody>\n",
    );
    for e in rows {
        let (head, lines) = details(e);
        let items: Vec<String> = lines
            .iter()
            .map(|l| format!("<li>{}</li>", html(l)))
            .collect();
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td class=\"sev-{s}\">{s}</td><td>{}</td><td>{}</td><td>{}<ul>{}</ul></td></tr>",
            html(&short_time(e.time)),
            host_link(&e.host),
            html(&e.kind),
            html(&head),
            items.concat(),
            s = html(&e.severity),
        );
    }
    b.push_str("</tbody></table>\n");
}

// ------------------------------------------------------------------ rule

fn rule(ctx: &Ctx<'_>, id: &str) -> Result<Reply, StorageError> {
    let q = ctx.c.queries.as_ref();
    let failing: Vec<_> = q
        .rule_host_statuses(id)?
        .into_iter()
        .filter(|r| r.status == plumb_core::report::Status::Fail)
        .collect();
    // Each shown host's last change of this rule, read in one query.
    let shown: Vec<String> = failing
        .iter()
        .take(RULE_HOSTS)
        .map(|r| r.host.clone())
        .collect();
    let changes = q.rule_changes(id, &shown)?;
    let mut last: BTreeMap<&str, &EventRow> = BTreeMap::new();
    for e in changes
        .iter()
        .filter(|e| e.body.get("rule").and_then(Value::as_str) == Some(id))
    {
        last.entry(e.host.as_str()).or_insert(e);
    }
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    for r in failing.iter().take(RULE_HOSTS) {
        let ev = last
            .get(r.host.as_str())
            .map(|e| evidence_lines(e))
            .unwrap_or_default();
        rows.push((r.host.clone(), r.severity.name().to_string(), ev));
    }
    let header = ["host", "severity", "evidence"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(h, s, e)| vec![h.clone(), s.clone(), e.join("\n")])
        .collect();
    let as_json = json!({
        "rule": id,
        "hosts_failing": failing.len(),
        "hosts": rows.iter().map(|(h, s, e)| json!({"host": h, "severity": s, "evidence": e})).collect::<Vec<_>>(),
    });
    if let Some(r) = export(
        ctx,
        &format!("rule-{}", segment(id)),
        &header,
        &cells,
        as_json,
    ) {
        return Ok(r);
    }
    let mut b = String::new();
    let title = failing.first().map(|r| r.title.as_str()).unwrap_or("");
    let _ = writeln!(
        b,
        "<p class=\"summary\"><code>{}</code> {}: failing on {} hosts{}.</p>",
        html(id),
        html(title),
        failing.len(),
        if failing.len() > RULE_HOSTS {
            format!(" (the first {RULE_HOSTS} shown)")
        } else {
            String::new()
        }
    );
    b.push_str(&export_links(&format!("/rules/{}", segment(id)), ""));
    b.push_str("<table id=\"rule-hosts\"><thead><tr><th>Host</th><th>Severity</th><th>Evidence</th></tr></thead><tbody>\n");
    for (h, s, ev) in &rows {
        let items: Vec<String> = ev.iter().map(|l| format!("<li>{}</li>", html(l))).collect();
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
            host_link(h),
            html(s),
            items.concat()
        );
    }
    b.push_str("</tbody></table>\n");
    Ok(layout(ctx, &format!("Rule {id}"), &b))
}

// ------------------------------------------------------------- baselines

/// The standing refusals' `?list=refusals&format=csv|json`.
fn refusals_export(ctx: &Ctx<'_>, refusals: &[storage::RefusalRow]) -> Option<Reply> {
    let header = ["host", "time", "reason"];
    let cells: Vec<Vec<String>> = refusals
        .iter()
        .map(|r| vec![r.host.clone(), rfc3339(r.time), r.message.clone()])
        .collect();
    let as_json = json!({"refusals": refusals.iter().map(|r| json!({
        "host": r.host, "time": rfc3339(r.time), "reason": r.message,
    })).collect::<Vec<_>>()});
    export(ctx, "baseline-refusals", &header, &cells, as_json)
}

fn baselines(ctx: &Ctx<'_>) -> Result<Reply, StorageError> {
    let q = ctx.c.queries.as_ref();
    let published = q.baselines()?;
    // Hosts per baseline in force, counted by the database.
    let mut running: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (id, v, n) in q.fleet_summary(i64::MIN)?.baselines {
        if let (Some(id), Some(v)) = (id, v) {
            *running.entry((id, v)).or_default() += usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    let hosts_on = |id: &str, v: u64| running.get(&(id.to_string(), v)).copied().unwrap_or(0);
    let header = [
        "id",
        "version",
        "signer_key_id",
        "hosts_glob",
        "sha256",
        "published_at",
        "hosts_running",
    ];
    let cells: Vec<Vec<String>> = published
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.version.to_string(),
                p.key_id.clone(),
                p.hosts.clone(),
                p.sha256.clone(),
                rfc3339(p.published_at),
                hosts_on(&p.id, p.version).to_string(),
            ]
        })
        .collect();
    let as_json = json!({"baselines": published.iter().map(|p| json!({
        "id": p.id, "version": p.version, "key_id": p.key_id, "hosts": p.hosts,
        "sha256": p.sha256, "published_at": rfc3339(p.published_at),
        "hosts_running": hosts_on(&p.id, p.version),
    })).collect::<Vec<_>>()});
    let refusals = q.baseline_refusals()?;
    if ctx.p.get("list") == Some("refusals") {
        if let Some(r) = refusals_export(ctx, &refusals) {
            return Ok(r);
        }
    } else if let Some(r) = export(ctx, "baselines", &header, &cells, as_json) {
        return Ok(r);
    }
    let mut b = String::new();
    b.push_str(&export_links("/baselines", ""));
    b.push_str(
        "<table id=\"baselines\"><thead><tr><th>Id</th><th>Version</th><th>Signer key id</th>\
         <th>Hosts</th><th>SHA-256</th><th>Published</th><th>Hosts running it</th></tr></thead><tbody>\n",
    );
    for p in &published {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td><code>{}</code></td>\
             <td><code title=\"{}\">{}…</code></td><td>{}</td><td class=\"num\">{}</td></tr>",
            html(&p.id),
            p.version,
            html(&p.key_id),
            html(&p.hosts),
            html(&p.sha256),
            html(p.sha256.get(..12).unwrap_or(&p.sha256)),
            html(&short_time(p.published_at)),
            hosts_on(&p.id, p.version)
        );
    }
    b.push_str("</tbody></table>\n");
    let others: Vec<_> = running
        .iter()
        .filter(|((id, v), _)| !published.iter().any(|p| &p.id == id && p.version == *v))
        .collect();
    b.push_str("<h2>Bundles refused by hosts</h2>\n");
    if refusals.is_empty() {
        b.push_str("<p class=\"note\">No host stands on a refusal.</p>\n");
    } else {
        b.push_str(&export_links("/baselines", "list=refusals"));
        b.push_str("<table id=\"refusals\"><thead><tr><th>Host</th><th>When</th><th>Reason</th></tr></thead><tbody>\n");
        for r in &refusals {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                host_link(&r.host),
                html(&short_time(r.time)),
                html(&r.message)
            );
        }
        b.push_str("</tbody></table>\n");
    }
    if !others.is_empty() {
        b.push_str("<h2>In force but not published here</h2><ul>\n");
        for ((id, v), n) in others {
            let _ = writeln!(b, "<li>{}@{v}: {n} hosts</li>", html(id));
        }
        b.push_str("</ul>\n");
    }
    Ok(layout(ctx, "Baselines", &b))
}
