//! Reconciliation against the provider's own bill: its cost report (fetched from its admin API
//! or read from a saved file) and Weir's ledger, side by side per UTC day and model. Parsing
//! and comparing are pure; fetching is in [`fetch`]. See docs/cost.md.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};
use weir_proto::admin::ReconcileSpendRequest;
use weir_proto::pricing;

/// Providers whose reports Weir reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI's Costs API (`GET /v1/organization/costs`).
    OpenAi,
    /// Anthropic's Cost API (`GET /v1/organizations/cost_report`).
    Anthropic,
}

impl Provider {
    /// `openai` or `anthropic`.
    pub fn parse(s: &str) -> Result<Provider, String> {
        match s {
            "openai" => Ok(Provider::OpenAi),
            "anthropic" => Ok(Provider::Anthropic),
            other => Err(format!("provider {other:?} must be openai or anthropic")),
        }
    }

    /// The Weir provider kind whose ledger rows this report covers.
    pub fn kind(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    /// The host of the provider's own API, which Weir providers pointing at it use.
    pub fn api_host(self) -> &'static str {
        match self {
            Provider::OpenAi => "api.openai.com",
            Provider::Anthropic => "api.anthropic.com",
        }
    }

    /// Figures from pages of this provider's cost API.
    pub fn parse_pages(self, pages: &[Value]) -> Result<Vec<Figure>, ReportError> {
        match self {
            Provider::OpenAi => parse_openai(pages),
            Provider::Anthropic => parse_anthropic(pages),
        }
    }

    /// Figures from a saved report: JSON (one page of the cost API, or an array of pages), else
    /// CSV.
    pub fn parse_report(self, text: &str) -> Result<Vec<Figure>, ReportError> {
        let text = text.trim();
        if !(text.starts_with('{') || text.starts_with('[')) {
            return parse_csv(text);
        }
        let v: Value =
            serde_json::from_str(text).map_err(|e| ReportError::NotJson(e.to_string()))?;
        match v {
            Value::Array(pages) => self.parse_pages(&pages),
            page => self.parse_pages(&[page]),
        }
    }
}

/// One figure: a day, a model, an amount in picodollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// UTC day.
    pub day: NaiveDate,
    /// The model as the source names it.
    pub model: String,
    /// Picodollars.
    pub pusd: i64,
}

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is not {0}: {1}")]
    Shape(&'static str, String),
    #[error("the report's currency is {0:?}, not US dollars")]
    Currency(String),
    #[error("not JSON ({0}) although it starts like it")]
    NotJson(String),
}

fn shape(what: &'static str, detail: impl Into<String>) -> ReportError {
    ReportError::Shape(what, detail.into())
}

/// The model a line item names: OpenAI's cost line items read "<model>, <usage kind>"
/// (e.g. "gpt-4o-2024-08-06, input"); items without a comma are kept whole (e.g. "Image
/// models") so nothing is dropped.
fn line_item_model(item: &str) -> String {
    match item.split_once(", ") {
        Some((model, _)) => model.trim().to_string(),
        None => item.trim().to_string(),
    }
}

/// Every result of every daily bucket of every page (`{"data": [{<start>, "results": [...]}]}`,
/// the shape both providers' cost APIs share), with the bucket's UTC day.
fn each_result(
    pages: &[Value],
    what: &'static str,
    day_of: impl Fn(&Value) -> Result<NaiveDate, ReportError>,
    mut figure: impl FnMut(NaiveDate, &Value) -> Result<Figure, ReportError>,
) -> Result<Vec<Figure>, ReportError> {
    let mut out = Vec::new();
    for page in pages {
        let buckets = page
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(what, "no data array"))?;
        for b in buckets {
            let day = day_of(b)?;
            let results = b
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| shape(what, "a bucket without results"))?;
            for r in results {
                out.push(figure(day, r)?);
            }
        }
    }
    Ok(out)
}

/// Pages of OpenAI's Costs API (`{"object": "page", "data": [bucket]}`, each bucket with
/// `start_time` in Unix seconds and `results` with `amount: {value, currency}` and
/// `line_item` when grouped by line item).
pub fn parse_openai(pages: &[Value]) -> Result<Vec<Figure>, ReportError> {
    const WHAT: &str = "an OpenAI costs page";
    let day_of = |b: &Value| {
        let start = b
            .get("start_time")
            .and_then(Value::as_i64)
            .ok_or_else(|| shape(WHAT, "a bucket without start_time"))?;
        Ok(DateTime::<Utc>::from_timestamp(start, 0)
            .ok_or_else(|| shape(WHAT, format!("start_time {start} is out of range")))?
            .date_naive())
    };
    each_result(pages, WHAT, day_of, |day, r| {
        let amount = r
            .get("amount")
            .ok_or_else(|| shape(WHAT, "a result without amount"))?;
        let currency = amount.get("currency").and_then(Value::as_str).unwrap_or("");
        if !currency.eq_ignore_ascii_case("usd") {
            return Err(ReportError::Currency(currency.to_string()));
        }
        let pusd = amount
            .get("value")
            .and_then(Value::as_number)
            .and_then(signed_usd_number)
            .ok_or_else(|| shape(WHAT, format!("amount {amount} is not a number")))?;
        let model = r
            .get("line_item")
            .and_then(Value::as_str)
            .map(line_item_model)
            .unwrap_or_else(|| "(no line item)".into());
        Ok(Figure { day, model, pusd })
    })
}

/// A dollar JSON number in picodollars; credits (negative amounts) keep their sign.
fn signed_usd_number(n: &serde_json::Number) -> Option<i64> {
    let text = n.to_string();
    match text.strip_prefix('-') {
        Some(abs) => {
            let n: serde_json::Number = abs.parse().ok()?;
            pricing::usd_number_to_pusd(&n).map(|v| -v)
        }
        None => pricing::usd_number_to_pusd(n),
    }
}

/// A decimal string of US cents (Anthropic's `amount`, e.g. "123.78912") in picodollars,
/// exactly; more than ten decimals of a cent round half up.
fn cents_to_pusd(s: &str) -> Option<i64> {
    let (neg, abs) = match s.trim().strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, s.trim()),
    };
    let (whole, frac) = abs.split_once('.').unwrap_or((abs, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // One cent is 10^10 picodollars.
    let kept: String = frac.chars().take(10).collect();
    let round_up = frac.as_bytes().get(10).is_some_and(|d| *d >= b'5');
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_units: i64 = format!("{kept:0<10}").parse().ok()?;
    let v = whole
        .checked_mul(10_000_000_000)?
        .checked_add(frac_units)?
        .checked_add(i64::from(round_up))?;
    Some(if neg { -v } else { v })
}

/// Pages of Anthropic's Cost API (`{"data": [bucket], "has_more", "next_page"}`, each bucket
/// with `starting_at` (RFC 3339) and `results` with `amount` (a decimal string of cents),
/// `currency` and `model` when grouped by description).
pub fn parse_anthropic(pages: &[Value]) -> Result<Vec<Figure>, ReportError> {
    const WHAT: &str = "an Anthropic cost report page";
    let day_of = |b: &Value| {
        let start = b
            .get("starting_at")
            .and_then(Value::as_str)
            .ok_or_else(|| shape(WHAT, "a bucket without starting_at"))?;
        Ok(DateTime::parse_from_rfc3339(start)
            .map_err(|e| shape(WHAT, format!("starting_at {start:?}: {e}")))?
            .with_timezone(&Utc)
            .date_naive())
    };
    each_result(pages, WHAT, day_of, |day, r| {
        let currency = r.get("currency").and_then(Value::as_str).unwrap_or("USD");
        if !currency.eq_ignore_ascii_case("usd") {
            return Err(ReportError::Currency(currency.to_string()));
        }
        let amount = r
            .get("amount")
            .and_then(Value::as_str)
            .ok_or_else(|| shape(WHAT, "a result without a string amount"))?;
        let pusd = cents_to_pusd(amount)
            .ok_or_else(|| shape(WHAT, format!("amount {amount:?} is not a decimal")))?;
        let model = r
            .get("model")
            .and_then(Value::as_str)
            .or_else(|| r.get("description").and_then(Value::as_str))
            .unwrap_or("(no model)")
            .to_string();
        Ok(Figure { day, model, pusd })
    })
}

/// A CSV export: a header naming a day column (`date`, `day`, `start_time`), a model column
/// (`model`, `line_item`, `description`) and a dollar column (`cost_usd`, `amount_usd`,
/// `cost`, `amount`); other columns are ignored. Dashboards' export columns are not documented
/// by the providers, so the names are matched loosely and a file without them is refused with
/// the headers it has.
pub fn parse_csv(text: &str) -> Result<Vec<Figure>, ReportError> {
    const WHAT: &str = "a CSV export with day, model and cost columns";
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv(
        lines
            .next()
            .ok_or_else(|| shape(WHAT, "the file is empty"))?,
    );
    let find = |names: &[&str]| {
        header.iter().position(|h| {
            let h = h.trim().to_ascii_lowercase();
            names.iter().any(|n| h == *n)
        })
    };
    let (Some(day_col), Some(model_col), Some(cost_col)) = (
        find(&["date", "day", "start_time", "usage_date_utc"]),
        find(&["model", "line_item", "description", "model_version"]),
        find(&["cost_usd", "amount_usd", "cost", "amount", "cost (usd)"]),
    ) else {
        return Err(shape(WHAT, format!("its columns are {header:?}")));
    };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells = split_csv(line);
        let cell = |c: usize| cells.get(c).map(|s| s.trim()).unwrap_or("");
        let row = i + 2;
        let day_text = cell(day_col);
        let day = NaiveDate::parse_from_str(day_text.get(..10).unwrap_or(day_text), "%Y-%m-%d")
            .map_err(|_| {
                shape(
                    WHAT,
                    format!("line {row}: day {day_text:?} is not YYYY-MM-DD"),
                )
            })?;
        let cost = cell(cost_col).trim_start_matches('$');
        let pusd = match cost.strip_prefix('-') {
            Some(abs) => pricing::parse_usd(abs).map(|v| -v),
            None => pricing::parse_usd(cost),
        }
        .map_err(|e| shape(WHAT, format!("line {row}: {e}")))?;
        out.push(Figure {
            day,
            model: line_item_model(cell(model_col)),
            pusd,
        });
    }
    Ok(out)
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The name both sides are matched on: lowercase, without a trailing snapshot date
/// ("gpt-4o-2024-08-06" and "gpt-4o" match; so do "claude-sonnet-4-20250514" and
/// "claude-sonnet-4"), since one side often names the alias and the other the snapshot.
pub fn model_family(model: &str) -> String {
    let m = model.trim().to_ascii_lowercase();
    let b = m.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && digits(n - 10..n - 6)
        && digits(n - 5..n - 3)
        && digits(n - 2..n)
    {
        return m[..n - 11].to_string();
    }
    // -YYYYMMDD
    if n > 9 && b[n - 9] == b'-' && digits(n - 8..n) && (b[n - 8] == b'2') {
        return m[..n - 9].to_string();
    }
    m
}

/// Weir's ledger for one day and model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFigure {
    /// UTC day.
    pub day: NaiveDate,
    /// Upstream model.
    pub model: String,
    /// Priced and estimated cost, picodollars.
    pub pusd: i64,
    /// Requests in the ledger.
    pub requests: u64,
    /// Of which could not be priced (their cost is missing from `pusd`).
    pub unpriced: u64,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// UTC day.
    pub day: NaiveDate,
    /// The model family both sides were matched on.
    pub model: String,
    /// The provider's figure, picodollars.
    pub provider_pusd: i64,
    /// Weir's figure, picodollars.
    pub weir_pusd: i64,
    /// Weir's requests and unpriced requests.
    pub requests: u64,
    /// Unpriced requests, whose cost Weir's figure lacks.
    pub unpriced: u64,
}

impl Line {
    /// Provider minus Weir: positive when the provider billed more than Weir recorded.
    pub fn difference(&self) -> i64 {
        self.provider_pusd - self.weir_pusd
    }
}

/// Both sides per day and model family, every pair present on either side, by day then model.
pub fn compare(provider: &[Figure], weir: &[LedgerFigure]) -> Vec<Line> {
    type Lines = BTreeMap<(NaiveDate, String), Line>;
    fn line<'a>(out: &'a mut Lines, day: NaiveDate, model: &str) -> &'a mut Line {
        let family = model_family(model);
        out.entry((day, family.clone())).or_insert(Line {
            day,
            model: family,
            provider_pusd: 0,
            weir_pusd: 0,
            requests: 0,
            unpriced: 0,
        })
    }
    let mut out = Lines::new();
    for f in provider {
        line(&mut out, f.day, &f.model).provider_pusd += f.pusd;
    }
    for w in weir {
        let l = line(&mut out, w.day, &w.model);
        l.weir_pusd += w.pusd;
        l.requests += w.requests;
        l.unpriced += w.unpriced;
    }
    out.into_values().collect()
}

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Invalid(String),
    #[error("report: {0}")]
    Report(#[from] ReportError),
    #[error("provider {0:?} not found")]
    UnknownProvider(String),
    #[error(
        "no Weir provider of kind {kind} points at {host}; name the ones to compare \
         (weir_providers, weirctl --weir-provider)"
    )]
    NoProviders {
        /// The Weir provider kind looked for.
        kind: &'static str,
        /// The provider's API host.
        host: &'static str,
    },
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// A reconciliation: both sides per day and model, where the provider's side came from, and
/// which Weir providers were compared.
#[derive(Debug)]
pub struct Reconciliation {
    /// By day, then model.
    pub lines: Vec<Line>,
    /// "api" (fetched) or "report" (given).
    pub source: &'static str,
    /// Weir provider keys whose ledger rows were summed.
    pub providers: Vec<String>,
}

/// The whole days [from, to] of a request, as a time range.
fn days(r: &ReconcileSpendRequest) -> Result<(NaiveDate, NaiveDate), ReconcileError> {
    let day = |field: &str, v: &str| {
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
            ReconcileError::Invalid(format!("{field} {v:?} must be a day, YYYY-MM-DD"))
        })
    };
    let (from, to) = (day("from", &r.from)?, day("to", &r.to)?);
    if to < from {
        return Err(ReconcileError::Invalid("to must not be before from".into()));
    }
    if (to - from).num_days() >= 366 {
        return Err(ReconcileError::Invalid("at most 366 days at a time".into()));
    }
    Ok((from, to))
}

/// The Weir providers to compare: those named (all must exist), else those of the provider's
/// kind whose base URL is its API host.
async fn weir_providers(
    pool: &PgPool,
    provider: Provider,
    named: &[String],
) -> Result<Vec<String>, ReconcileError> {
    let keys: Vec<String> = if named.is_empty() {
        sqlx::query_scalar(
            "SELECT key FROM providers WHERE kind = $1 AND base_url ~* $2 ORDER BY key",
        )
        .bind(provider.kind())
        .bind(format!(
            "^https?://{}(:[0-9]+)?(/|$)",
            provider.api_host().replace('.', "\\.")
        ))
        .fetch_all(pool)
        .await?
    } else {
        let known: Vec<String> =
            sqlx::query_scalar("SELECT key FROM providers WHERE key = ANY($1)")
                .bind(named)
                .fetch_all(pool)
                .await?;
        if let Some(missing) = named.iter().find(|p| !known.contains(p)) {
            return Err(ReconcileError::UnknownProvider(missing.clone()));
        }
        named.to_vec()
    };
    if keys.is_empty() {
        return Err(ReconcileError::NoProviders {
            kind: provider.kind(),
            host: provider.api_host(),
        });
    }
    Ok(keys)
}

/// The ledger's cost per UTC day and upstream model for `providers` in [since, until).
async fn ledger(
    pool: &PgPool,
    providers: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<LedgerFigure>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, upstream_model,
                coalesce(sum(cost_pusd), 0)::bigint AS pusd, count(*) AS requests,
                count(*) FILTER (WHERE cost_pusd IS NULL) AS unpriced
         FROM usage_cost_events
         WHERE provider_key = ANY($1) AND created_at >= $2 AND created_at < $3
         GROUP BY 1, 2",
    )
    .bind(providers)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| LedgerFigure {
            day: row.get("day"),
            model: row.get("upstream_model"),
            pusd: row.get("pusd"),
            requests: row.get::<i64, _>("requests") as u64,
            unpriced: row.get::<i64, _>("unpriced") as u64,
        })
        .collect())
}

/// Reads the given report or fetches the provider's, and lays the ledger beside it.
pub async fn run(
    pool: &PgPool,
    sources: &fetch::Sources,
    r: &ReconcileSpendRequest,
) -> Result<Reconciliation, ReconcileError> {
    let provider = Provider::parse(&r.provider).map_err(ReconcileError::Invalid)?;
    let (from, to) = days(r)?;
    let since = from.and_time(chrono::NaiveTime::MIN).and_utc();
    let until = (to + chrono::Duration::days(1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let providers = weir_providers(pool, provider, &r.weir_providers).await?;
    let (figures, source) = if r.report.trim().is_empty() {
        let src = match provider {
            Provider::OpenAi => &sources.openai,
            Provider::Anthropic => &sources.anthropic,
        };
        let pages = fetch::pages(provider, src, since, until).await?;
        (provider.parse_pages(&pages)?, "api")
    } else {
        (provider.parse_report(&r.report)?, "report")
    };
    let figures: Vec<Figure> = figures
        .into_iter()
        .filter(|f| f.day >= from && f.day <= to)
        .collect();
    let ledger = ledger(pool, &providers, since, until).await?;
    Ok(Reconciliation {
        lines: compare(&figures, &ledger),
        source,
        providers,
    })
}

/// Fetching the provider's report over its admin API.
pub mod fetch {
    use super::Provider;
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    /// Where a provider's report is fetched from and the environment variable holding its
    /// admin key (read on the control plane's host when a reconciliation asks for it).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Source {
        /// Base URL, e.g. `https://api.openai.com`.
        pub base_url: String,
        /// Name of the environment variable with the admin key.
        pub key_env: String,
    }

    /// Both providers' sources.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Sources {
        /// OpenAI.
        pub openai: Source,
        /// Anthropic.
        pub anthropic: Source,
    }

    impl Default for Sources {
        fn default() -> Self {
            Sources {
                openai: Source {
                    base_url: "https://api.openai.com".into(),
                    key_env: "OPENAI_ADMIN_KEY".into(),
                },
                anthropic: Source {
                    base_url: "https://api.anthropic.com".into(),
                    key_env: "ANTHROPIC_ADMIN_KEY".into(),
                },
            }
        }
    }

    /// Why a fetch failed; never carries the key.
    #[derive(Debug, thiserror::Error)]
    pub enum FetchError {
        #[error(
            "environment variable {0} (the provider's admin key) is not set on the control plane"
        )]
        NoKey(String),
        #[error("the provider's report API at {0} failed: {1}")]
        Http(String, String),
        #[error("the provider's report API answered {0}: {1}")]
        Status(u16, String),
        #[error("more than {0} pages: narrow the range")]
        TooManyPages(usize),
    }

    /// Most pages one reconciliation reads (a day a bucket: a year is ~13 pages of 31 days).
    const MAX_PAGES: usize = 50;

    /// The first page's URL (the cursor is added for later pages).
    pub fn first_url(
        p: Provider,
        base: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> String {
        let base = base.trim_end_matches('/');
        match p {
            Provider::OpenAi => format!(
                "{base}/v1/organization/costs?start_time={}&end_time={}&bucket_width=1d\
                 &group_by=line_item&limit=31",
                since.timestamp(),
                until.timestamp()
            ),
            Provider::Anthropic => format!(
                "{base}/v1/organizations/cost_report?starting_at={}&ending_at={}\
                 &bucket_width=1d&group_by[]=description&limit=31",
                since.format("%Y-%m-%dT%H:%M:%SZ"),
                until.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        }
    }

    /// Every page of the report for [since, until).
    pub async fn pages(
        p: Provider,
        source: &Source,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Value>, FetchError> {
        let key = std::env::var(&source.key_env)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| FetchError::NoKey(source.key_env.clone()))?;
        let client = client();
        let first = first_url(p, &source.base_url, since, until);
        let mut url = first.clone();
        let mut out = Vec::new();
        loop {
            if out.len() == MAX_PAGES {
                return Err(FetchError::TooManyPages(MAX_PAGES));
            }
            let mut req = http::Request::get(&url);
            req = match p {
                Provider::OpenAi => req.header("authorization", format!("Bearer {key}")),
                Provider::Anthropic => req
                    .header("x-api-key", key.as_str())
                    .header("anthropic-version", "2023-06-01"),
            };
            let req = req
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .map_err(|e| FetchError::Http(source.base_url.clone(), e.to_string()))?;
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
                    .await
                    .map_err(|_| FetchError::Http(source.base_url.clone(), "timed out".into()))?
                    .map_err(|e| FetchError::Http(source.base_url.clone(), e.to_string()))?;
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .map_err(|e| FetchError::Http(source.base_url.clone(), e.to_string()))?
                .to_bytes();
            if status != 200 {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(300).collect();
                return Err(FetchError::Status(status, text.replace(&key, "[key]")));
            }
            let page: Value = serde_json::from_slice(&body)
                .map_err(|e| FetchError::Http(source.base_url.clone(), format!("not JSON: {e}")))?;
            let next = page
                .get("has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .then(|| page.get("next_page").and_then(Value::as_str))
                .flatten()
                .map(str::to_string);
            out.push(page);
            match next {
                Some(cursor) => {
                    url = format!(
                        "{first}&page={}",
                        percent_encoding::utf8_percent_encode(
                            &cursor,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                }
                None => return Ok(out),
            }
        }
    }

    type Client = hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >;

    fn client() -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        const KEYS: &[&str] = &[
            "data",
            "results",
            "start_time",
            "starting_at",
            "amount",
            "value",
            "currency",
            "line_item",
            "model",
            "description",
            "has_more",
            "next_page",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[-0-9.a-zT:Z ,]{0,24}".prop_map(Value::from),
            prop::sample::select(
                &["usd", "USD", "2025-11-29T00:00:00Z", "0.3", "gpt-4o, input"][..]
            )
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kvs| {
                    Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn report_parsers_never_panic(pages in proptest::collection::vec(json_value(), 0..3), text in "\\PC{0,200}") {
            let _ = parse_openai(&pages);
            let _ = parse_anthropic(&pages);
            let _ = parse_csv(&text);
            let _ = parse_csv(&format!("date,model,cost\n{text}"));
            let _ = cents_to_pusd(&text);
            let family = model_family(&text);
            proptest::prop_assert!(family.len() <= text.trim().len());
        }
    }

    #[test]
    fn openai_pages() {
        // Shape of https://platform.openai.com/docs/api-reference/usage/costs_object.
        let page = json!({"object": "page", "has_more": false, "next_page": null, "data": [
            {"object": "bucket", "start_time": 1_764_374_400, "end_time": 1_764_460_800, "results": [
                {"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"},
                 "line_item": "gpt-4o-2024-08-06, input", "project_id": null},
                {"object": "organization.costs.result", "amount": {"value": 1.5e-5, "currency": "usd"},
                 "line_item": "gpt-4o-2024-08-06, output", "project_id": null},
                {"object": "organization.costs.result", "amount": {"value": 2, "currency": "usd"},
                 "line_item": "Image models", "project_id": null}
            ]}
        ]});
        let f = parse_openai(&[page]).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].day, day("2025-11-29"));
        assert_eq!(f[0].model, "gpt-4o-2024-08-06");
        assert_eq!(f[0].pusd, 60_000_000_000);
        assert_eq!(f[1].pusd, 15_000_000);
        assert_eq!(f[2].model, "Image models");
        let eur = json!({"data": [{"start_time": 0, "results": [{"amount": {"value": 1, "currency": "eur"}}]}]});
        assert_eq!(
            parse_openai(&[eur]),
            Err(ReportError::Currency("eur".into()))
        );
        assert!(parse_openai(&[json!({"error": "x"})]).is_err());
    }

    #[test]
    fn anthropic_pages_in_cents() {
        // Shape of https://docs.claude.com/en/api/admin-api/usage-cost/get-cost-report.
        let page = json!({"has_more": false, "next_page": null, "data": [
            {"starting_at": "2025-11-29T00:00:00Z", "ending_at": "2025-11-30T00:00:00Z", "results": [
                {"currency": "USD", "amount": "123.78912", "workspace_id": null,
                 "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens",
                 "context_window": "0-200k", "model": "claude-sonnet-4-20250514",
                 "service_tier": "standard", "token_type": "uncached_input_tokens"}
            ]}
        ]});
        let f = parse_anthropic(&[page]).unwrap();
        assert_eq!(f[0].pusd, 1_237_891_200_000, "123.78912 cents = $1.2378912");
        assert_eq!(f[0].model, "claude-sonnet-4-20250514");
        assert_eq!(cents_to_pusd("0.00000000005"), Some(1));
        assert_eq!(cents_to_pusd("-1"), Some(-10_000_000_000));
        assert_eq!(cents_to_pusd("1e3"), None);
    }

    #[test]
    fn saved_reports_are_json_pages_or_csv() {
        let page = json!({"data": [{"start_time": 1_764_374_400, "results": [
            {"amount": {"value": 1, "currency": "usd"}, "line_item": "gpt-4o, input"}]}]});
        let one = Provider::OpenAi.parse_report(&page.to_string()).unwrap();
        let many = Provider::OpenAi
            .parse_report(&json!([page.clone(), page]).to_string())
            .unwrap();
        assert_eq!((one.len(), many.len()), (1, 2));
        let csv = Provider::Anthropic
            .parse_report("day,model,amount_usd\n2025-11-29,claude,0.5\n")
            .unwrap();
        assert_eq!(csv[0].pusd, PUSD_HALF);
        assert!(matches!(
            Provider::OpenAi.parse_report("{not json"),
            Err(ReportError::NotJson(_))
        ));
    }

    const PUSD_HALF: i64 = pricing::PUSD_PER_USD / 2;

    #[test]
    fn csv_exports() {
        let text = "date,model,cost_usd,requests\n2025-11-29,\"gpt-4o, input\",0.06,3\n2025-11-30T00:00:00Z,gpt-4o,$1.50,1\n";
        let f = parse_csv(text).unwrap();
        assert_eq!(
            f,
            vec![
                Figure {
                    day: day("2025-11-29"),
                    model: "gpt-4o".into(),
                    pusd: 60_000_000_000
                },
                Figure {
                    day: day("2025-11-30"),
                    model: "gpt-4o".into(),
                    pusd: 1_500_000_000_000
                },
            ]
        );
        let err = parse_csv("when,what\n1,2\n").unwrap_err().to_string();
        assert!(err.contains("[\"when\", \"what\"]"), "{err}");
        let err = parse_csv("date,model,cost\nyesterday,m,1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn families_match_aliases_and_snapshots() {
        let cases = [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("GPT-4o", "gpt-4o"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3-5-haiku-latest", "claude-3-5-haiku-latest"),
            ("o3-mini", "o3-mini"),
            ("gpt-4-0613", "gpt-4-0613"),
            ("Image models", "image models"),
        ];
        for (m, want) in cases {
            assert_eq!(model_family(m), want, "{m}");
        }
    }

    #[test]
    fn comparison_shows_every_day_and_model_with_the_difference() {
        let provider = vec![
            Figure {
                day: day("2025-11-28"),
                model: "gpt-4o-2024-08-06".into(),
                pusd: 100,
            },
            Figure {
                day: day("2025-11-29"),
                model: "gpt-4o-2024-08-06".into(),
                pusd: 70,
            },
            Figure {
                day: day("2025-11-29"),
                model: "gpt-4o-mini".into(),
                pusd: 5,
            },
        ];
        let weir = vec![
            LedgerFigure {
                day: day("2025-11-28"),
                model: "gpt-4o".into(),
                pusd: 100,
                requests: 10,
                unpriced: 0,
            },
            LedgerFigure {
                day: day("2025-11-29"),
                model: "gpt-4o".into(),
                pusd: 50,
                requests: 5,
                unpriced: 1,
            },
        ];
        let lines = compare(&provider, &weir);
        let view: Vec<(String, &str, i64)> = lines
            .iter()
            .map(|l| (l.day.to_string(), l.model.as_str(), l.difference()))
            .collect();
        assert_eq!(
            view,
            vec![
                ("2025-11-28".to_string(), "gpt-4o", 0),
                ("2025-11-29".to_string(), "gpt-4o", 20),
                ("2025-11-29".to_string(), "gpt-4o-mini", 5),
            ]
        );
        assert_eq!(lines[1].unpriced, 1);
    }
}
