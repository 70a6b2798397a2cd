//! The console's fleet page as queries: hosts filtered (name glob, status),
//! sorted and cut to one page by the database, so that a page of a
//! 10,000-host fleet reads its 50 rows, counts the drift of those only, and
//! the page's totals come from one aggregate. Both backends run the SQL
//! built here (`$n` parameters: glob pattern, then `stale_before`, then
//! `drift_since` when the order needs it).

use super::DRIFT_KINDS;

/// Which hosts the fleet page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostStatus {
    /// Every host.
    #[default]
    All,
    /// Failing at least one rule.
    Failing,
    /// Failing none, passing at least one.
    Passing,
    /// Not heard from since `stale_before`.
    Stale,
    /// Heard from since `stale_before`.
    Fresh,
}

/// The fleet page's order (then by host; `desc` reverses both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostSort {
    /// Host name.
    #[default]
    Host,
    /// Score (hosts without one first).
    Score,
    /// Failing rules.
    Fail,
    /// Drift events since `drift_since`.
    Drift,
    /// Last seen.
    Seen,
    /// Agent version (hosts without one first).
    Agent,
}

/// A fleet page to read.
#[derive(Debug, Clone, Default)]
pub struct HostQuery {
    /// Host name glob (`*`, `?`, ASCII case-insensitive, as
    /// [`super::host_matches`]).
    pub glob: Option<String>,
    /// Which hosts.
    pub status: HostStatus,
    /// Order.
    pub sort: HostSort,
    /// Descending.
    pub desc: bool,
    /// A host last seen at or before this unix time is stale.
    pub stale_before: i64,
    /// Drift is counted from this unix time on.
    pub drift_since: i64,
    /// At most this many rows (`None`: all, as the exports list them).
    pub limit: Option<usize>,
    /// Rows skipped first.
    pub offset: usize,
}

/// One page of hosts and the totals of every host the filter keeps.
#[derive(Debug, Clone, Default)]
pub struct HostPage {
    /// The page's hosts, in order.
    pub rows: Vec<super::HostRow>,
    /// Hosts the filter keeps (every page).
    pub matched: u64,
    /// Of those, stale.
    pub stale: u64,
    /// Of those, failing a rule.
    pub failing: u64,
}

/// A glob as a `LIKE … ESCAPE '\'` pattern, lowercase (host names are
/// stored lowercase): `*` any run, `?` one character, the rest literal.
pub(crate) fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// How a backend writes what differs between the two SQL dialects.
pub(crate) struct Dialect {
    /// A join giving each host's drift since `$3` (alias `d`), or "".
    pub drift_join: String,
    /// The drift of host `h` since `$3`.
    pub drift: String,
    /// After a text column in ORDER BY: byte order.
    pub collate: &'static str,
    /// `x` (a non-negative double) rounded half up to an integer, as
    /// Rust's `f64::round` (PostgreSQL's `round` rounds half to even).
    pub round: fn(&str) -> String,
}

/// `FROM … WHERE …` of the hosts a query keeps, `h` the host row and `c`
/// its rule counts. Parameters: `$1` the LIKE pattern (NULL: any host),
/// `$2` `stale_before`.
fn from_where(q: &HostQuery, join: &str) -> String {
    let status = match q.status {
        HostStatus::All => "",
        HostStatus::Failing => " AND coalesce(c.fail, 0) > 0",
        HostStatus::Passing => " AND coalesce(c.fail, 0) = 0 AND coalesce(c.pass, 0) > 0",
        HostStatus::Stale => " AND h.last_seen <= $2",
        HostStatus::Fresh => " AND h.last_seen > $2",
    };
    // `$2` always appears (a statement binds exactly its parameters).
    format!(
        "FROM hosts h LEFT JOIN rule_counts c ON c.host = h.host {join}
         WHERE (CAST($1 AS TEXT) IS NULL OR h.host LIKE CAST($1 AS TEXT) ESCAPE '\\')
           AND CAST($2 AS BIGINT) IS NOT NULL{status}"
    )
}

/// The totals of a query: matched, stale, failing (`$1`, `$2`).
pub(crate) fn totals_sql(q: &HostQuery) -> String {
    format!(
        "SELECT count(*), count(*) FILTER (WHERE h.last_seen <= $2),
                count(*) FILTER (WHERE coalesce(c.fail, 0) > 0) {}",
        from_where(q, "")
    )
}

/// Whether [`rows_sql`] takes `$3` (`drift_since`).
pub(crate) fn rows_need_drift(q: &HostQuery) -> bool {
    q.sort == HostSort::Drift
}

/// The host rows of a query, in order, one page: the columns of `hosts`
/// without the drift count (counted for the page's rows only, unless the
/// order needs it: then `$3` is `drift_since`).
pub(crate) fn rows_sql(q: &HostQuery, d: &Dialect) -> String {
    let dir = if q.desc { "DESC" } else { "ASC" };
    let nulls = if q.desc { "NULLS LAST" } else { "NULLS FIRST" };
    let collate = d.collate;
    let counted = "coalesce(c.pass, 0) + coalesce(c.fail, 0) + coalesce(c.error, 0)";
    let key = match q.sort {
        HostSort::Host => String::new(),
        HostSort::Score => format!(
            "CASE WHEN {counted} > 0 THEN {} ELSE -10 END {dir}, ",
            (d.round)(&format!(
                "CAST(1000 AS DOUBLE PRECISION) * coalesce(c.pass, 0) / ({counted})"
            ))
        ),
        HostSort::Fail => format!("coalesce(c.fail, 0) {dir}, "),
        HostSort::Drift => format!("{} {dir}, ", d.drift),
        HostSort::Seen => format!("h.last_seen {dir}, "),
        HostSort::Agent => format!("h.agent_version{collate} {dir} {nulls}, "),
    };
    let join = if rows_need_drift(q) {
        d.drift_join.as_str()
    } else {
        ""
    };
    let page = match q.limit {
        Some(n) => format!(" LIMIT {n} OFFSET {}", q.offset),
        None => String::new(),
    };
    format!(
        "SELECT h.host, h.first_seen, h.last_seen, h.address, h.agent_version, h.baseline_id,
                h.baseline_version, h.fim_digest, h.acked_seq,
                coalesce(c.pass, 0), coalesce(c.fail, 0), coalesce(c.error, 0),
                coalesce(c.skipped, 0)
         {}
         ORDER BY {key}h.host{collate} {dir}{page}",
        from_where(q, join)
    )
}

/// The drift kinds as an SQL list.
pub(crate) fn drift_kinds_sql() -> String {
    DRIFT_KINDS.map(|k| format!("'{k}'")).join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_like_patterns() {
        assert_eq!(like_pattern("Web-*"), "web-%");
        assert_eq!(like_pattern("w?b_1%\\"), "w_b\\_1\\%\\\\");
    }
}
