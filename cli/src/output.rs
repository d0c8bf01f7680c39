//! Printing admin results as readable tables or as JSON for scripts.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;
use weir_proto::admin::*;

/// Output format.
#[derive(Clone, Copy)]
pub enum Format {
    Table,
    Json,
}

/// Prints results in one format.
pub struct Printer {
    format: Format,
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn opt(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// One row per bucket, one column per charted entry.
fn print_chart(
    buckets: &[String],
    series: &[ChartSeries],
    cell: impl Fn(&ChartSeries, usize) -> String,
) {
    let mut header = vec!["BUCKET (UTC)".to_string()];
    header.extend(series.iter().map(|s| {
        if s.name.is_empty() {
            s.key.clone()
        } else {
            s.name.clone()
        }
    }));
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for (i, b) in buckets.iter().enumerate() {
        let mut row = vec![b.clone()];
        row.extend(series.iter().map(|s| cell(s, i)));
        t.add_row(row);
    }
    println!("{t}");
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Format) -> Self {
        Printer { format }
    }

    fn json<T: Serialize + ?Sized>(&self, v: &T) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    /// Providers.
    pub fn providers(&self, ps: &[Provider]) {
        if let Format::Json = self.format {
            return self.json(ps);
        }
        let mut t = table(&["KEY", "KIND", "BASE URL", "SECRET", "CREATED"]);
        for p in ps {
            let secret = if p.secret_stored {
                "stored (sealed)".to_string()
            } else if p.api_key_env.is_empty() {
                "-".to_string()
            } else {
                format!("env {}", p.api_key_env)
            };
            t.add_row(vec![&p.key, &p.kind, &p.base_url, &secret, &p.created_at]);
        }
        println!("{t}");
    }

    /// Admin tokens.
    pub fn admin_tokens(&self, ts: &[AdminToken]) {
        if let Format::Json = self.format {
            return self.json(ts);
        }
        let mut t = table(&["NAME", "ID", "ROLE", "TEAM", "CREATED", "REVOKED"]);
        for a in ts {
            t.add_row(vec![
                a.name.clone(),
                a.id.clone(),
                a.role.clone(),
                if a.team_name.is_empty() {
                    "-".into()
                } else {
                    a.team_name.clone()
                },
                a.created_at.clone(),
                if a.revoked_at.is_empty() {
                    "-".into()
                } else {
                    a.revoked_at.clone()
                },
            ]);
        }
        println!("{t}");
    }

    /// Feedback after a change.
    pub fn feedback(&self, f: &Feedback) {
        if let Format::Json = self.format {
            return self.json(f);
        }
        println!("{}", feedback_line(f));
    }

    /// A page of sessions.
    pub fn sessions(&self, r: &ListSessionsResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&[
            "SESSION",
            "HARNESS",
            "TURNS",
            "ERRORS",
            "USD",
            "IN TOKENS",
            "OUT TOKENS",
            "LAST SEEN",
            "MODELS",
        ]);
        for s in &r.sessions {
            t.add_row(vec![
                s.id.clone(),
                dash(&s.harness).to_string(),
                s.turns.to_string(),
                s.errors.to_string(),
                s.cost_usd.clone(),
                s.input_tokens.to_string(),
                s.output_tokens.to_string(),
                s.last_seen.clone(),
                s.models.join(", "),
            ]);
        }
        println!("{t}");
        if !r.next_cursor.is_empty() {
            println!("more: --cursor {}", r.next_cursor);
        }
    }

    /// One session and its turns.
    pub fn session(&self, d: &SessionDetail) {
        if let Format::Json = self.format {
            return self.json(d);
        }
        if let Some(s) = &d.summary {
            println!(
                "session {} ({} from {})\nharness {}, {} turns, {} errors, {} retried, {} USD, {} ms\nfirst {}  last {}",
                s.session_id,
                s.id,
                dash(&s.source),
                dash(&s.harness),
                s.turns,
                s.errors,
                d.retried,
                s.cost_usd,
                s.duration_ms,
                s.first_seen,
                s.last_seen
            );
        }
        let kinds: Vec<String> = d
            .turns_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("turns by kind: {}", kinds.join(", "));
        let mut t = table(&[
            "#",
            "AT",
            "KIND",
            "MODEL",
            "STATUS",
            "MS",
            "IN",
            "OUT",
            "USD",
            "REQUEST ID",
        ]);
        for (i, turn) in d.turns.iter().enumerate() {
            t.add_row(vec![
                (i + 1).to_string(),
                turn.created_at.clone(),
                dash(&turn.turn_kind).to_string(),
                turn.model_key.clone(),
                turn.status_code.to_string(),
                turn.duration_ms.to_string(),
                opt(turn.input_tokens),
                opt(turn.output_tokens),
                dash(&turn.cost_usd).to_string(),
                turn.request_id.clone(),
            ]);
        }
        println!("{t}");
    }

    /// Purge runs.
    pub fn purge_runs(&self, runs: &[PurgeRun]) {
        if let Format::Json = self.format {
            return self.json(runs);
        }
        let mut t = table(&[
            "ID",
            "STARTED",
            "TRIGGER",
            "DRY RUN",
            "RETENTION",
            "CUTOFF",
            "LOGS",
            "PAYLOADS",
            "TAGS",
            "ATTEMPTS",
            "PARTITIONS",
            "MS",
            "REPLICA",
            "ERROR",
        ]);
        for r in runs {
            t.add_row(vec![
                r.id.to_string(),
                r.started_at.clone(),
                r.trigger.clone(),
                if r.dry_run { "yes" } else { "no" }.to_string(),
                r.retention.clone(),
                r.cutoff.clone(),
                r.request_logs.to_string(),
                r.payloads.to_string(),
                r.tags.to_string(),
                r.attempts.to_string(),
                r.partitions_dropped.to_string(),
                r.duration_ms.to_string(),
                r.replica.clone(),
                dash(&r.error).to_string(),
            ]);
        }
        println!("{t}");
    }

    /// The spend leaderboard.
    pub fn leaderboard(&self, r: &GetLeaderboardResponse, chart: bool) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&[
            "#",
            "USER",
            "USD",
            "REQUESTS",
            "IN TOKENS",
            "OUT TOKENS",
            "TOP MODEL",
            "AVG TOOLS OFFERED",
            "AVG TOOL CALLS",
        ]);
        let avg = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        for row in &r.rows {
            t.add_row(vec![
                row.rank.to_string(),
                dash(&row.user_name).to_string(),
                row.cost_usd.clone(),
                row.requests.to_string(),
                row.input_tokens.to_string(),
                row.output_tokens.to_string(),
                dash(&row.dominant_model).to_string(),
                avg(row.avg_exposed_tools),
                avg(row.avg_invoked_tools),
            ]);
        }
        println!("{t}");
        println!("{} ({} to {})", r.range, r.since, r.until);
        if chart {
            print_chart(&r.bucket_starts, &r.chart, |s, i| {
                weir_proto::pricing::format_usd(s.cost_pusd.get(i).copied().unwrap_or(0))
            });
        }
    }

    /// Harness usage.
    pub fn harness_usage(&self, r: &GetHarnessUsageResponse, chart: bool) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&["#", "HARNESS", "KEY", "REQUESTS", "USD"]);
        for row in &r.rows {
            t.add_row(vec![
                row.rank.to_string(),
                dash(&row.label).to_string(),
                row.harness.clone(),
                row.requests.to_string(),
                row.cost_usd.clone(),
            ]);
        }
        println!("{t}");
        println!("{} ({} to {})", r.range, r.since, r.until);
        if chart {
            print_chart(&r.bucket_starts, &r.chart, |s, i| {
                s.requests.get(i).copied().unwrap_or(0).to_string()
            });
        }
    }

    /// A spend report.
    pub fn spend(&self, r: &GetSpendResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&[
            "NAME",
            "KEY",
            "USD",
            "REQUESTS",
            "PRICED",
            "UNPRICED",
            "NO USAGE",
            "IN TOKENS",
            "OUT TOKENS",
        ]);
        for row in r.rows.iter().chain(r.total.iter()) {
            t.add_row(vec![
                if row.name.is_empty() {
                    "-".to_string()
                } else {
                    row.name.clone()
                },
                if row.key.is_empty() {
                    "-".to_string()
                } else {
                    row.key.clone()
                },
                row.cost_usd.clone(),
                row.requests.to_string(),
                row.priced.to_string(),
                row.unpriced.to_string(),
                row.usage_missing.to_string(),
                row.input_tokens.to_string(),
                row.output_tokens.to_string(),
            ]);
        }
        println!("{t}");
        println!("{} to {}", r.since, r.until);
    }

    /// Teams.
    pub fn teams(&self, ts: &[Team]) {
        if let Format::Json = self.format {
            return self.json(ts);
        }
        let mut t = table(&["NAME", "ID", "MEMBERS", "CREATED"]);
        for team in ts {
            let members = if team.members.is_empty() {
                "-".to_string()
            } else {
                team.members.join(", ")
            };
            t.add_row(vec![
                team.name.clone(),
                team.id.clone(),
                members,
                team.created_at.clone(),
            ]);
        }
        println!("{t}");
    }

    /// Service accounts.
    pub fn service_accounts(&self, ss: &[ServiceAccount]) {
        if let Format::Json = self.format {
            return self.json(ss);
        }
        let mut t = table(&["TEAM/NAME", "ID", "CREATED"]);
        for s in ss {
            t.add_row(vec![
                format!("{}/{}", s.team_name, s.name),
                s.id.clone(),
                s.created_at.clone(),
            ]);
        }
        println!("{t}");
    }

    /// Telemetry sinks.
    pub fn sinks(&self, ss: &[TelemetrySink]) {
        if let Format::Json = self.format {
            return self.json(ss);
        }
        let mut t = table(&[
            "NAME",
            "KIND",
            "PROTOCOL",
            "ENDPOINT",
            "HEADERS FROM ENV",
            "RATIO",
            "METRICS",
            "CONTENT",
        ]);
        for s in ss {
            let headers: Vec<String> = s
                .headers_from_env
                .iter()
                .map(|(h, e)| format!("{h}=${e}"))
                .collect();
            t.add_row(vec![
                s.name.clone(),
                s.kind.clone(),
                s.protocol.clone(),
                s.endpoint.clone(),
                if headers.is_empty() {
                    "-".into()
                } else {
                    headers.join(", ")
                },
                s.sample_ratio.to_string(),
                s.metrics.to_string(),
                s.capture_content.to_string(),
            ]);
        }
        println!("{t}");
    }

    /// Models.
    pub fn models(&self, ms: &[Model]) {
        if let Format::Json = self.format {
            return self.json(ms);
        }
        let mut t = table(&[
            "MODEL",
            "TARGETS",
            "OPERATIONS",
            "PRICE IN/CACHED/OUT $/MTok",
        ]);
        for m in ms {
            let targets: Vec<String> = m
                .targets
                .iter()
                .map(|x| format!("{}:{} (w{})", x.provider_key, x.upstream_model, x.weight))
                .collect();
            let price = m
                .price
                .as_ref()
                .map(|p| {
                    format!(
                        "{} / {} / {}",
                        p.input_per_mtok, p.cached_input_per_mtok, p.output_per_mtok
                    )
                })
                .unwrap_or_else(|| "unpriced".into());
            let ops = if m.operations.is_empty() {
                "all".to_string()
            } else {
                m.operations.join(",")
            };
            t.add_row(vec![m.key.clone(), targets.join(", "), ops, price]);
        }
        println!("{t}");
    }

    /// A reconciliation: provider, Weir and the difference per day and model.
    pub fn reconciliation(&self, r: &ReconcileSpendResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&[
            "DAY",
            "MODEL",
            "PROVIDER $",
            "WEIR $",
            "DIFFERENCE $",
            "REQUESTS",
            "UNPRICED",
        ]);
        let total = r.total.clone().unwrap_or_default();
        for l in r.lines.iter().chain(std::iter::once(&total)) {
            t.add_row(vec![
                if l.day.is_empty() {
                    "total".into()
                } else {
                    l.day.clone()
                },
                l.model.clone(),
                l.provider_usd.clone(),
                l.weir_usd.clone(),
                l.difference_usd.clone(),
                l.requests.to_string(),
                l.unpriced.to_string(),
            ]);
        }
        println!("{t}");
        println!(
            "report from the provider's {}; Weir providers: {}",
            if r.source == "api" { "API" } else { "file" },
            r.weir_providers.join(", ")
        );
    }

    /// A multiplier set.
    pub fn multiplier(&self, m: &PriceMultiplier) {
        if let Format::Json = self.format {
            return self.json(m);
        }
        let whom = if m.provider.is_empty() {
            format!("key {}", m.api_key_id)
        } else {
            format!("provider {}", m.provider)
        };
        println!("{whom}: costs × {} from now on", m.multiplier);
    }

    /// Models with unpriced usage.
    pub fn unpriced(&self, r: &ListUnpricedResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        if r.models.is_empty() {
            println!("no unpriced usage from {} to {}", r.since, r.until);
            return;
        }
        let mut t = table(&[
            "MODEL",
            "PROVIDER",
            "UPSTREAM MODEL",
            "REQUESTS",
            "INPUT",
            "OUTPUT",
            "LAST SEEN",
            "MISSING",
        ]);
        for m in &r.models {
            let missing = if !m.has_price {
                "a price".to_string()
            } else if m.service_tiers.is_empty() {
                "a rate for a usage kind".to_string()
            } else {
                format!("a rate (tiers: {})", m.service_tiers.join(", "))
            };
            t.add_row(vec![
                m.model_key.clone(),
                m.provider_key.clone(),
                m.upstream_model.clone(),
                m.requests.to_string(),
                m.input_tokens.to_string(),
                m.output_tokens.to_string(),
                m.last_seen.clone(),
                missing,
            ]);
        }
        println!("{t}");
    }

    /// A price.
    pub fn price(&self, p: &Price) {
        if let Format::Json = self.format {
            return self.json(p);
        }
        let mut t = table(&[
            "MODEL",
            "INPUT",
            "CACHED INPUT",
            "OUTPUT",
            "VALID FROM",
            "VERSION",
        ]);
        t.add_row(vec![
            p.model_key.clone(),
            p.input_per_mtok.clone(),
            p.cached_input_per_mtok.clone(),
            p.output_per_mtok.clone(),
            p.valid_from.clone(),
            p.version.to_string(),
        ]);
        println!("{t}");
    }

    /// Data planes, one row each.
    pub fn dataplanes(&self, ds: &[Dataplane]) {
        if let Format::Json = self.format {
            return self.json(ds);
        }
        let mut t = table(&[
            "NODE",
            "GROUP",
            "VERSION",
            "ADDRESS",
            "CONFIG",
            "LAST NACK",
            "LAST SEEN",
        ]);
        for d in ds {
            let behind: Vec<&str> = d
                .current_versions
                .iter()
                .filter(|(k, v)| {
                    d.acked_versions
                        .get(*k)
                        .is_none_or(|a| a.split('.').next() != Some(v.as_str()))
                })
                .map(|(k, _)| k.as_str())
                .collect();
            let config = if behind.is_empty() {
                "current".to_string()
            } else {
                format!("behind: {}", behind.join(","))
            };
            t.add_row(vec![
                d.node_id.clone(),
                d.fleet_group.clone(),
                if d.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .to_string(),
                d.software_version.clone(),
                d.address.clone(),
                config,
                dash(&d.last_nack).to_string(),
                d.last_seen.clone(),
            ]);
        }
        println!("{t}");
    }

    /// One data plane in full.
    pub fn dataplane(&self, d: &Dataplane) {
        if let Format::Json = self.format {
            return self.json(d);
        }
        let mut t = table(&["FIELD", "VALUE"]);
        let mut rows = vec![
            ("node".to_string(), d.node_id.clone()),
            ("group".into(), d.fleet_group.clone()),
            ("software version".into(), d.software_version.clone()),
            ("address".into(), d.address.clone()),
            ("control plane".into(), d.control_plane.clone()),
            (
                "state".into(),
                if d.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .into(),
            ),
            (
                "connected since".into(),
                dash(&d.connected_since).to_string(),
            ),
            ("last seen".into(), d.last_seen.clone()),
            ("last NACK".into(), dash(&d.last_nack).to_string()),
            ("last NACK at".into(), dash(&d.last_nack_at).to_string()),
        ];
        let mut types: Vec<&String> = d.current_versions.keys().collect();
        types.sort();
        for ty in types {
            let acked = d.acked_versions.get(ty).map(String::as_str).unwrap_or("-");
            rows.push((
                format!("{ty} (acked / current)"),
                format!("{acked} / {}", d.current_versions[ty]),
            ));
        }
        for (k, v) in rows {
            t.add_row(vec![k, v]);
        }
        println!("{t}");
    }

    /// Limits.
    pub fn limits(&self, ls: &[Limits]) {
        if let Format::Json = self.format {
            return self.json(ls);
        }
        let mut t = table(&[
            "SUBJECT", "NAME", "RPM", "TPM", "BUDGET $", "PERIOD", "SPENT $",
        ]);
        let n = |v: u64| {
            if v == 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        for l in ls {
            t.add_row(vec![
                l.subject.clone(),
                l.name.clone(),
                n(l.requests_per_minute),
                n(l.tokens_per_minute),
                dash(&l.budget_usd).to_string(),
                l.budget_period.clone(),
                l.spent_usd.clone(),
            ]);
        }
        println!("{t}");
    }

    /// The payload policy.
    pub fn policy(&self, p: &PayloadPolicy) {
        if let Format::Json = self.format {
            return self.json(p);
        }
        let mut t = table(&["FIELD", "VALUE"]);
        let paths = if p.redaction_paths.is_empty() {
            "-".to_string()
        } else {
            p.redaction_paths.join("\n")
        };
        for (k, v) in [
            ("capture mode", p.capture_mode.clone()),
            ("request max bytes", p.request_max_bytes.to_string()),
            ("response max bytes", p.response_max_bytes.to_string()),
            ("stream max events", p.stream_max_events.to_string()),
            ("redaction paths", paths),
            (
                "fleet group",
                if p.fleet_group.is_empty() {
                    "(default)".to_string()
                } else {
                    p.fleet_group.clone()
                },
            ),
            ("version", p.version.clone()),
            ("updated", p.updated_at.clone()),
        ] {
            t.add_row(vec![k.to_string(), v]);
        }
        println!("{t}");
    }

    /// Users.
    pub fn users(&self, us: &[User]) {
        if let Format::Json = self.format {
            return self.json(us);
        }
        let mut t = table(&["NAME", "ID", "EMAIL", "REQUEST LOGS", "CREATED"]);
        for u in us {
            t.add_row(vec![
                u.name.as_str(),
                &u.id,
                dash(&u.email),
                if u.request_logging_enabled {
                    "on"
                } else {
                    "off"
                },
                &u.created_at,
            ]);
        }
        println!("{t}");
    }

    /// Keys.
    pub fn keys(&self, ks: &[ApiKey]) {
        if let Format::Json = self.format {
            return self.json(ks);
        }
        let mut t = table(&[
            "PREFIX", "NAME", "OWNER", "MODELS", "EXPIRES", "REVOKED", "ID",
        ]);
        for k in ks {
            let models = if k.allowed_models.is_empty() {
                "all".to_string()
            } else {
                k.allowed_models.join(",")
            };
            t.add_row(vec![
                k.display_prefix.as_str(),
                &k.name,
                dash(&k.owner_user_name),
                &models,
                dash(&k.expires_at),
                dash(&k.revoked_at),
                &k.id,
            ]);
        }
        println!("{t}");
    }

    /// A new key with its one-time secret.
    pub fn created_key(&self, r: &CreateApiKeyResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        if let Some(k) = &r.key {
            self.keys(std::slice::from_ref(k));
        }
        println!("Secret (shown once, store it now):\n{}", r.secret);
    }

    /// A page of logs.
    pub fn logs(&self, r: &ListRequestLogsResponse) {
        if let Format::Json = self.format {
            return self.json(r);
        }
        let mut t = table(&[
            "TIME",
            "REQUEST ID",
            "MODEL",
            "STATUS",
            "OUTCOME",
            "MS",
            "IN",
            "OUT",
            "TOTAL",
            "COST $",
        ]);
        for l in &r.logs {
            t.add_row(vec![
                l.created_at.clone(),
                l.request_id.clone(),
                l.model_key.clone(),
                l.status_code.to_string(),
                l.outcome.clone(),
                l.duration_ms.to_string(),
                opt(l.input_tokens),
                opt(l.output_tokens),
                opt(l.total_tokens),
                if l.cost_usd.is_empty() {
                    dash(&l.pricing_status).to_string()
                } else {
                    l.cost_usd.clone()
                },
            ]);
        }
        println!("{t}");
        if !r.next_cursor.is_empty() {
            println!("more: --cursor {}", r.next_cursor);
        }
    }

    /// One log in full.
    pub fn log_detail(&self, d: &RequestLogDetail) {
        if let Format::Json = self.format {
            return self.json(d);
        }
        let s = d.summary.clone().unwrap_or_default();
        let mut t = table(&["FIELD", "VALUE"]);
        let rows: Vec<(&str, String)> = vec![
            ("log id", s.log_id),
            ("request id", s.request_id),
            ("time", s.created_at),
            (
                "operation",
                format!("{}{}", s.operation, if s.stream { " (stream)" } else { "" }),
            ),
            ("model", s.model_key),
            (
                "provider / upstream model",
                format!("{} / {}", dash(&s.provider_key), dash(&d.upstream_model)),
            ),
            ("status", format!("{} {}", s.status_code, s.outcome)),
            ("error", dash(&d.error_message).to_string()),
            ("latency ms", s.duration_ms.to_string()),
            ("time to first byte ms", opt(d.ttfb_ms)),
            (
                "tokens in / out / total",
                format!(
                    "{} / {} / {}",
                    opt(s.input_tokens),
                    opt(s.output_tokens),
                    opt(s.total_tokens)
                ),
            ),
            (
                "cached / reasoning tokens",
                format!(
                    "{} / {}",
                    opt(d.cached_input_tokens),
                    opt(d.reasoning_tokens)
                ),
            ),
            (
                "cost $",
                format!("{} ({})", dash(&s.cost_usd), dash(&s.pricing_status)),
            ),
            (
                "user / key",
                format!("{} / {}", dash(&s.user_id), dash(&s.api_key_id)),
            ),
            ("node / group", format!("{} / {}", d.node_id, d.fleet_group)),
            ("user agent", dash(&d.user_agent).to_string()),
            (
                "harness",
                format!("{} {} {}", s.harness, d.harness_label, d.harness_version)
                    .trim()
                    .to_string(),
            ),
            (
                "session / turn",
                format!(
                    "{} ({}) / {}",
                    dash(&d.session_id),
                    dash(&d.session_source),
                    dash(&d.turn_kind)
                ),
            ),
            (
                "feedback",
                d.feedback.as_ref().map_or("-".to_string(), feedback_line),
            ),
            (
                "tools offered / invoked",
                format!(
                    "{} / {}",
                    d.exposed_tool_count.map_or("-".into(), |n| n.to_string()),
                    d.invoked_tool_count.map_or("-".into(), |n| n.to_string())
                ),
            ),
            ("policy", d.policy.clone()),
            ("same request id", d.same_request_id_count.to_string()),
        ];
        for (k, v) in rows {
            t.add_row(vec![k.to_string(), v]);
        }
        println!("{t}");
        if !d.tags.is_empty() {
            let tags: Vec<String> = d
                .tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect();
            println!("tags: {}", tags.join("; "));
        }
        let mut a = table(&[
            "#", "PROVIDER", "MODEL", "STATUS", "ERROR", "MS", "ANSWERED",
        ]);
        for at in &d.attempts {
            a.add_row(vec![
                at.number.to_string(),
                at.provider_key.clone(),
                at.upstream_model.clone(),
                at.status_code.to_string(),
                if at.error_kind.is_empty() {
                    "-".to_string()
                } else {
                    format!("{}: {}", at.error_kind, at.error_message)
                },
                at.duration_ms.to_string(),
                if at.produced_response { "yes" } else { "no" }.to_string(),
            ]);
        }
        println!("attempts:\n{a}");
        let pretty = |s: &str| {
            serde_json::from_str::<serde_json::Value>(s)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| s.to_string())
        };
        let trunc = |b: bool| if b { " (truncated)" } else { "" };
        println!(
            "request payload{}:\n{}",
            trunc(d.request_payload_truncated),
            if d.request_payload.is_empty() {
                "-".into()
            } else {
                pretty(&d.request_payload)
            }
        );
        println!(
            "response payload{}:\n{}",
            trunc(d.response_payload_truncated),
            if d.response_payload.is_empty() {
                "-".into()
            } else {
                pretty(&d.response_payload)
            }
        );
    }
}

/// Feedback on one line: scores sorted by name, labels, comment.
fn feedback_line(f: &Feedback) -> String {
    let mut scores: Vec<String> = f.scores.iter().map(|(k, v)| format!("{k}={v}")).collect();
    scores.sort();
    let mut parts = Vec::new();
    if !scores.is_empty() {
        parts.push(scores.join(" "));
    }
    if !f.labels.is_empty() {
        parts.push(format!("[{}]", f.labels.join(", ")));
    }
    if !f.comment.is_empty() {
        parts.push(format!("{:?}", f.comment));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}
