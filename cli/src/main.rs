//! `weirctl`: administers a Weir control plane over gRPC.
//!
//! Exit codes: 0 success, 1 unexpected failure, 2 bad usage, 3 not found, 4 already exists,
//! 5 not authenticated or not allowed, 6 control plane unreachable, 7 invalid argument.

mod output;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use weir_proto::admin::admin_client::AdminClient;
use weir_proto::admin::*;

use output::{Format, Printer};

#[derive(Parser)]
#[command(name = "weirctl", version, about = "Administer a Weir control plane")]
struct Cli {
    /// Control plane gRPC URL.
    #[arg(
        long,
        global = true,
        env = "WEIR_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    control_plane: String,
    /// Admin token.
    #[arg(long, global = true, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// PEM CA certificate of the control plane's TLS certificate (for https:// URLs); without
    /// it, the public webpki roots are trusted.
    #[arg(long, global = true, env = "WEIR_CONTROL_PLANE_CA")]
    ca: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: OutputArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Upstream providers.
    #[command(subcommand)]
    Providers(ProvidersCmd),
    /// Models and their routes.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Gateway API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Request logs.
    #[command(subcommand)]
    Logs(LogsCmd),
    /// The payload policy: what request logs capture.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Rate limits and budgets of keys, users and teams.
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// The data planes of the fleet and the config versions they hold.
    #[command(subcommand)]
    Dataplanes(DataplanesCmd),
    /// OTLP destinations every data plane exports spans (and metrics) to.
    #[command(subcommand)]
    Sinks(SinksCmd),
    /// Teams and their members.
    #[command(subcommand)]
    Teams(TeamsCmd),
    /// Admin tokens and their roles.
    #[command(subcommand, name = "admin-tokens")]
    AdminTokens(AdminTokensCmd),
    /// Model prices.
    #[command(subcommand)]
    Prices(PricesCmd),
    /// Spend from the ledger, grouped, with counts by pricing status; `spend unpriced` lists
    /// models with usage that could not be priced.
    #[command(args_conflicts_with_subcommands = true)]
    Spend {
        #[command(subcommand)]
        what: Option<SpendCmd>,
        /// user, team, service_account, model or provider.
        #[arg(long, default_value = "user")]
        by: String,
        /// From (RFC 3339; default 30 days ago).
        #[arg(long, default_value = "")]
        since: String,
        /// Until (RFC 3339, exclusive; default now).
        #[arg(long, default_value = "")]
        until: String,
    },
    /// Users ranked by spend over the last 7 or 31 days (top 30), with each one's dominant model
    /// and tool averages; the top 5's spend per 12-hour UTC bucket with --chart.
    Leaderboard {
        /// 7d or 31d.
        #[arg(long, default_value = "7d")]
        range: String,
        /// Also print the top 5's spend per 12-hour bucket.
        #[arg(long)]
        chart: bool,
    },
    /// Agent harnesses (Claude Code, Codex CLI, SDKs, ...) ranked by requests over 7 or 31 days.
    Harnesses {
        /// 7d or 31d.
        #[arg(long, default_value = "7d")]
        range: String,
        /// Also print the top 5's requests per 12-hour bucket.
        #[arg(long)]
        chart: bool,
    },
    /// Request-log retention: `purge --dry-run` counts what would go, `purge run` removes it,
    /// `purge history` lists earlier runs. The spend ledger is never purged.
    Purge {
        /// Count what would be removed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// 1d, 3d or 7d (default: the control plane's configured retention).
        #[arg(long, global = true, default_value = "")]
        retention: String,
        #[command(subcommand)]
        action: Option<PurgeCmd>,
    },
    /// Agent sessions: the request logs that share an owner and a session id.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `weirctl completions bash > /etc/bash_completion.d/weirctl`.
    Completions { shell: clap_complete::Shell },
    /// Service accounts: non-human callers owned by a team.
    #[command(subcommand, name = "service-accounts")]
    ServiceAccounts(ServiceAccountsCmd),
}

#[derive(Subcommand)]
enum AdminTokensCmd {
    /// Admin tokens (never their secrets).
    List {
        /// Include revoked tokens.
        #[arg(long)]
        all: bool,
    },
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// platform_admin (everything) or team_viewer (one team's request logs).
        #[arg(long)]
        role: String,
        /// For team_viewer: the team, id or name.
        #[arg(long, default_value = "")]
        team: String,
        /// Print only the token (for scripts).
        #[arg(long)]
        secret_only: bool,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum TeamsCmd {
    /// Every team with its members.
    List,
    /// Add a team.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Add a user to a team; their keys without a team are attributed to it.
    AddMember {
        /// Team id or name.
        #[arg(long)]
        team: String,
        /// User id or name.
        #[arg(long)]
        user: String,
    },
    /// Remove a user from a team.
    RemoveMember {
        #[arg(long)]
        team: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum ServiceAccountsCmd {
    /// Service accounts, of one team or all.
    List {
        /// Team id or name.
        #[arg(long, default_value = "")]
        team: String,
    },
    /// Add a service account to a team; give it keys with `keys create --service-account`.
    Create {
        #[arg(long)]
        name: String,
        /// Owning team, id or name.
        #[arg(long)]
        team: String,
    },
}

// Parsed once per process: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum SessionsCmd {
    /// Sessions active in a time range, newest activity (or highest cost) first.
    List {
        #[arg(long, default_value = "")]
        user_id: String,
        #[arg(long, default_value = "")]
        service_account_id: String,
        #[arg(long, default_value = "")]
        team_id: String,
        #[arg(long, default_value = "")]
        harness: String,
        /// Only sessions that used this model.
        #[arg(long, default_value = "")]
        model: String,
        /// RFC 3339 (default: 31 days ago).
        #[arg(long, default_value = "")]
        since: String,
        #[arg(long, default_value = "")]
        until: String,
        /// Only sessions with a failed request.
        #[arg(long)]
        has_errors: bool,
        /// Only sessions that cost at least this many US dollars.
        #[arg(long, default_value = "")]
        min_cost: String,
        /// last_seen or cost.
        #[arg(long, default_value = "last_seen")]
        sort: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value = "")]
        cursor: String,
    },
    /// One session: totals, turns by kind, and its request logs in order.
    Show {
        /// <owner id>:<session id>, as listed.
        id: String,
    },
}

#[derive(Subcommand)]
enum PurgeCmd {
    /// Remove request logs older than the retention now.
    Run,
    /// Earlier purges, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum SinksCmd {
    /// Every telemetry sink.
    List,
    /// Add a sink; every node starts exporting to it without a restart.
    Create {
        #[arg(long)]
        name: String,
        /// For otlp: for grpc the collector's base URL, for http/protobuf the full traces URL.
        /// Presets derive it (point them elsewhere with --option base_url=URL).
        #[arg(long, default_value = "")]
        endpoint: String,
        /// grpc or http/protobuf (default: grpc for otlp; presets use http/protobuf).
        #[arg(long, default_value = "")]
        protocol: String,
        /// otlp, or a preset: langfuse, phoenix, datadog, langsmith, openlayer.
        #[arg(long, default_value = "otlp")]
        kind: String,
        /// Preset option KEY=VALUE (repeatable): base_url, site, project, ml_app, pipeline_id.
        #[arg(long = "option", value_parser = parse_kv)]
        options: Vec<(String, String)>,
        /// Preset secret NAME=ENV_VAR (repeatable): api_key, public_key, secret_key; the value
        /// is read from ENV_VAR on each node.
        #[arg(long = "secret-from-env", value_parser = parse_kv)]
        secrets_from_env: Vec<(String, String)>,
        /// HEADER=ENV_VAR: the header's value is read from ENV_VAR on each node (repeatable).
        #[arg(long = "header-from-env", value_parser = parse_kv)]
        headers_from_env: Vec<(String, String)>,
        /// Share of traces exported, (0, 1].
        #[arg(long, default_value_t = 1.0)]
        sample_ratio: f64,
        /// Export metrics there too.
        #[arg(long)]
        metrics: bool,
        /// Put message content on spans (from the redacted request-log payload).
        #[arg(long)]
        capture_content: bool,
        /// With --capture-content: also gen_ai.prompt.{i}.* / gen_ai.completion.{i}.*.
        #[arg(long)]
        legacy_attributes: bool,
        /// Start each request's server span as a new root linked to the caller's span.
        #[arg(long)]
        new_root: bool,
    },
    /// Remove a sink; nodes stop exporting to it.
    Delete {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum DataplanesCmd {
    /// Every data plane that has connected.
    List,
    /// One data plane in full, with its last NACK.
    Show { node_id: String },
}

#[derive(Subcommand)]
enum LimitsCmd {
    /// List every subject with limits, with its spend this period.
    List,
    /// Set a subject's limits (replacing its current ones; all zero/empty removes them).
    Set {
        /// A key, by id or display prefix.
        #[arg(long, group = "subject")]
        key: Option<String>,
        /// A user, by id or name.
        #[arg(long, group = "subject")]
        user: Option<String>,
        /// A team, by id or name.
        #[arg(long, group = "subject")]
        team: Option<String>,
        /// Requests per minute, per data plane (0: none).
        #[arg(long, default_value_t = 0)]
        rpm: u64,
        /// Tokens per minute, per data plane (0: none).
        #[arg(long, default_value_t = 0)]
        tpm: u64,
        /// Spend budget in US dollars for each period; held across the fleet.
        #[arg(long, default_value = "")]
        budget_usd: String,
        /// day, month or total.
        #[arg(long, default_value = "month")]
        period: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Show the payload policy (of a group, or the default).
    Show {
        /// A fleet group; without it, the default policy.
        #[arg(long, default_value = "")]
        group: String,
    },
    /// Change the payload policy; unset options keep their value.
    Set {
        /// A fleet group (its policy starts as a copy of the default); without it, the default.
        #[arg(long, default_value = "")]
        group: String,
        /// disabled, summary_only or redacted_payloads.
        #[arg(long)]
        capture_mode: Option<String>,
        #[arg(long)]
        request_max_bytes: Option<u32>,
        #[arg(long)]
        response_max_bytes: Option<u32>,
        #[arg(long)]
        stream_max_events: Option<u32>,
        /// Admin redaction path (repeatable; replaces the current list), e.g.
        /// body.messages.*.content.
        #[arg(long = "redact")]
        redaction_paths: Vec<String>,
        /// Remove every admin redaction path.
        #[arg(long, conflicts_with = "redaction_paths")]
        clear_redactions: bool,
    },
}

#[derive(Subcommand)]
enum ProvidersCmd {
    /// List providers.
    List,
    /// Add a provider.
    Create {
        #[arg(long)]
        key: String,
        /// openai or anthropic.
        #[arg(long, default_value = "openai")]
        kind: String,
        #[arg(long)]
        base_url: String,
        /// Name of the env var on data-plane hosts that holds the upstream secret.
        #[arg(long, default_value = "")]
        api_key_env: String,
        /// Extra upstream header, NAME=VALUE (repeatable).
        #[arg(long = "header", value_parser = parse_kv)]
        headers: Vec<(String, String)>,
        /// Header carrying the secret when not the kind's default (e.g. api-key for Azure).
        #[arg(long, default_value = "")]
        auth_header: String,
        /// Read the upstream secret from standard input and let the control plane store it
        /// (sealed) instead of naming an env var; never pass it as an argument.
        #[arg(long, conflicts_with = "api_key_env")]
        api_key_stdin: bool,
    },
    /// Replace the secret the control plane stores for a provider (read from standard input).
    SetSecret {
        #[arg(long)]
        key: String,
        /// Remove the stored secret instead.
        #[arg(long)]
        clear: bool,
    },
}

/// The first line of standard input, without its line ending: a secret piped or typed in.
fn secret_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    if read.is_err() || secret.is_empty() {
        return Err(Failure {
            code: 2,
            message: "no secret on standard input (pipe it in, e.g. `weirctl providers set-secret --key openai < secret.txt`)".into(),
        });
    }
    Ok(secret)
}

/// Reads a price file: JSON, or TOML when the name ends in `.toml`.
fn read_price_file(path: &std::path::Path) -> Result<SetPricesRequest, Failure> {
    let bad = |e: String| Failure {
        code: 7,
        message: format!("{}: {e}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

#[derive(Subcommand)]
enum SpendCmd {
    /// The provider's own cost report beside Weir's ledger, per UTC day and model, with the
    /// difference. The control plane fetches the report with the admin key named by its
    /// settings (OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY by default) unless --file gives one.
    Reconcile {
        /// openai or anthropic.
        #[arg(long)]
        provider: String,
        /// First UTC day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last UTC day, YYYY-MM-DD (included).
        #[arg(long)]
        to: String,
        /// A saved report: JSON page(s) of the provider's cost API, or a CSV export.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Weir provider whose ledger rows count (repeatable); default: those pointing at the
        /// provider's API host.
        #[arg(long = "weir-provider")]
        weir_providers: Vec<String>,
    },
    /// Models with usage but no price (or no rate for a usage kind or tier they used).
    Unpriced {
        /// From (RFC 3339; default 30 days ago).
        #[arg(long, default_value = "")]
        since: String,
        /// Until (RFC 3339, exclusive; default now).
        #[arg(long, default_value = "")]
        until: String,
    },
}

#[derive(Subcommand)]
enum PricesCmd {
    /// Multiply computed costs of a provider's or a key's requests from now on, e.g. 0.8 for a
    /// negotiated 20 % discount; 1 removes it.
    Multiplier {
        /// A provider key.
        #[arg(long, conflicts_with = "key", required_unless_present = "key")]
        provider: Option<String>,
        /// An API key's id or display prefix.
        #[arg(long)]
        key: Option<String>,
        /// The multiplier.
        multiplier: String,
    },
    /// Set the prices in FILE (JSON or .toml: the body of POST /api/v1/admin/prices, a list
    /// `prices` of SetPriceRequest) in one transaction: all or none. See docs/cost.md.
    Load {
        /// The price file.
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// List models with their targets and prices.
    List,
    /// Add a model and its route.
    Create {
        #[arg(long)]
        key: String,
        /// PROVIDER:UPSTREAM_MODEL[:WEIGHT] (repeatable, in fallback order).
        #[arg(long = "target", required = true, value_parser = parse_target)]
        targets: Vec<Target>,
        /// Operation the model serves (repeatable): chat_completions, responses, embeddings,
        /// messages. None means all.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Fleet group whose data planes get the model (repeatable); none means all.
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Set a model's base price (US dollars per million tokens); applies to new requests. For
    /// cache writes, tiers and the other kinds, use `weirctl prices load`.
    Price {
        #[arg(long)]
        model: String,
        /// Fresh input tokens, $/MTok.
        #[arg(long)]
        input_price: String,
        /// Output tokens, $/MTok.
        #[arg(long)]
        output_price: String,
        /// Cached input tokens, $/MTok; defaults to the input price.
        #[arg(long, default_value = "")]
        cached_input_price: String,
    },
}

/// Retries, fallback and timeouts of a route (0 = default).
#[derive(Args)]
struct PolicyArgs {
    /// Upstream attempts at most, across targets (default: one per target).
    #[arg(long, default_value_t = 0)]
    max_attempts: u32,
    /// Upstream statuses that move on to the next attempt, comma-separated
    /// (default 429,500,502,503,504).
    #[arg(long, value_delimiter = ',')]
    retry_on: Vec<u32>,
    /// Pause before a retry, doubled each time.
    #[arg(long, default_value_t = 0)]
    backoff_ms: u32,
    /// Time allowed for an upstream's response headers, per attempt.
    #[arg(long, default_value_t = 0)]
    first_byte_timeout_ms: u32,
    /// Time allowed for the whole request, streams included.
    #[arg(long, default_value_t = 0)]
    total_timeout_ms: u32,
    /// Refuse requests while the model has no price (nothing unpriced is spent).
    #[arg(long)]
    require_price: bool,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// List users.
    List,
    /// Add a user.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        email: String,
        /// Do not keep request logs for this user's keys.
        #[arg(long)]
        no_request_logging: bool,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// List keys (never their secrets).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Create a key; its secret is printed once.
    Create(KeyCreate),
    /// Revoke a key by id or display prefix; running data planes stop accepting it.
    Revoke { key: String },
}

#[derive(Args)]
struct KeyCreate {
    /// Owning user (id or name); with --service-account, the user its traffic is attributed to.
    #[arg(long)]
    user: Option<String>,
    /// Owning service account (id or team/name), for non-human callers.
    #[arg(long)]
    service_account: Option<String>,
    #[arg(long)]
    name: String,
    /// Allowed model (repeatable); none means every model.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Expiry, RFC 3339.
    #[arg(long, default_value = "")]
    expires_at: String,
    /// Fleet group whose data planes accept the key (repeatable); none means all.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Print only the secret (for scripts).
    #[arg(long)]
    secret_only: bool,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum LogsCmd {
    /// List request logs, newest first.
    List {
        #[arg(long, default_value = "")]
        request_id: String,
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value = "")]
        user: String,
        #[arg(long, default_value_t = 0)]
        status: u32,
        /// Caller tag x-weir-service.
        #[arg(long, default_value = "")]
        service: String,
        /// Caller tag x-weir-component.
        #[arg(long, default_value = "")]
        component: String,
        /// Caller tag x-weir-env.
        #[arg(long, default_value = "")]
        env: String,
        /// A bespoke tag, KEY or KEY=VALUE.
        #[arg(long, default_value = "")]
        tag: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous page's cursor.
        #[arg(long, default_value = "")]
        cursor: String,
        /// Provider key.
        #[arg(long, default_value = "")]
        provider: String,
        /// Team id.
        #[arg(long, default_value = "")]
        team: String,
        /// Harness key (e.g. claude_code, codex).
        #[arg(long, default_value = "")]
        harness: String,
        /// chat_completions, responses, embeddings or messages.
        #[arg(long, default_value = "")]
        operation: String,
        /// From this time on (RFC 3339).
        #[arg(long, default_value = "")]
        since: String,
        /// Before this time (RFC 3339).
        #[arg(long, default_value = "")]
        until: String,
        /// Only logs whose feedback has this label.
        #[arg(long, default_value = "")]
        feedback_label: String,
    },
    /// Show one request log by log id or request id.
    Show { id: String },
    /// Attach feedback to a request (log id or request id); repeated calls merge.
    Feedback {
        id: String,
        /// NAME=NUMBER (repeatable); a later score of the same name replaces it.
        #[arg(long = "score", value_parser = parse_kv)]
        scores: Vec<(String, String)>,
        /// A label (repeatable); labels accumulate.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

fn parse_target(s: &str) -> Result<Target, String> {
    let mut parts = s.splitn(3, ':');
    let provider = parts.next().filter(|p| !p.is_empty());
    let model = parts.next().filter(|m| !m.is_empty());
    let (Some(provider_key), Some(upstream_model)) = (provider, model) else {
        return Err(format!("{s:?} is not PROVIDER:UPSTREAM_MODEL[:WEIGHT]"));
    };
    let weight = match parts.next() {
        None => 1,
        Some(w) => w
            .parse()
            .map_err(|_| format!("weight {w:?} in {s:?} is not a whole number"))?,
    };
    Ok(Target {
        provider_key: provider_key.to_string(),
        upstream_model: upstream_model.to_string(),
        weight,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no control plane and no token.
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "weirctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let printer = Printer::new(match cli.output {
        OutputArg::Table => Format::Table,
        OutputArg::Json => Format::Json,
    });
    match run(cli, &printer).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weirctl: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        let code = match s.code() {
            Code::NotFound => 3,
            Code::AlreadyExists => 4,
            Code::Unauthenticated | Code::PermissionDenied => 5,
            Code::Unavailable | Code::DeadlineExceeded => 6,
            Code::InvalidArgument => 7,
            _ => 1,
        };
        Failure {
            code,
            message: s.message().to_string(),
        }
    }
}

/// Adds the admin token to every call.
type AuthInterceptor = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

type Client =
    AdminClient<tonic::service::interceptor::InterceptedService<Channel, AuthInterceptor>>;

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let token = cli.admin_token.clone().ok_or(Failure {
        code: 5,
        message: "no admin token: set WEIR_ADMIN_TOKEN or pass --admin-token".into(),
    })?;
    let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| Failure {
        code: 7,
        message: "the admin token contains characters that cannot be sent".into(),
    })?;
    // The same variable may list several replicas (as data planes take it): use the first that
    // answers.
    let mut last_error = String::new();
    let mut channel = None;
    for url in cli
        .control_plane
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let mut endpoint = Channel::from_shared(url.to_string()).map_err(|_| Failure {
            code: 7,
            message: format!("{url:?} is not a valid control-plane URL"),
        })?;
        if url.starts_with("https://") {
            let tls =
                weir_proto::grpc_tls::client_config(cli.ca.as_deref()).map_err(|e| Failure {
                    code: 7,
                    message: e.to_string(),
                })?;
            endpoint = endpoint.tls_config(tls).map_err(|e| Failure {
                code: 7,
                message: format!("TLS: {e}"),
            })?;
        }
        match endpoint
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
        {
            Ok(c) => {
                channel = Some(c);
                break;
            }
            Err(e) => last_error = format!("cannot reach the control plane at {url}: {e}"),
        }
    }
    let channel = channel.ok_or(Failure {
        code: 6,
        message: if last_error.is_empty() {
            "no control-plane URL given".to_string()
        } else {
            last_error
        },
    })?;
    let interceptor: AuthInterceptor = Box::new(move |mut req: Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    });
    Ok(AdminClient::with_interceptor(channel, interceptor))
}

async fn run(cli: Cli, p: &Printer) -> Result<(), Failure> {
    let mut c = connect(&cli).await?;
    match cli.command {
        // Answered in main, before connecting.
        Command::Completions { .. } => {}
        Command::Providers(ProvidersCmd::List) => {
            let r = c
                .list_providers(ListProvidersRequest {})
                .await?
                .into_inner();
            p.providers(&r.providers);
        }
        Command::Providers(ProvidersCmd::Create {
            key,
            kind,
            base_url,
            api_key_env,
            headers,
            auth_header,
            api_key_stdin,
        }) => {
            let api_key = if api_key_stdin {
                secret_from_stdin()?
            } else {
                String::new()
            };
            let r = c
                .create_provider(CreateProviderRequest {
                    key,
                    kind,
                    base_url,
                    api_key_env,
                    extra_headers: headers.into_iter().collect(),
                    auth_header,
                    api_key,
                })
                .await?
                .into_inner();
            p.providers(&[r]);
        }
        Command::Providers(ProvidersCmd::SetSecret { key, clear }) => {
            let api_key = if clear {
                String::new()
            } else {
                secret_from_stdin()?
            };
            let r = c
                .set_provider_secret(SetProviderSecretRequest { key, api_key })
                .await?
                .into_inner();
            p.providers(&[r]);
        }
        Command::Models(ModelsCmd::List) => {
            let r = c.list_models(ListModelsRequest {}).await?.into_inner();
            p.models(&r.models);
        }
        Command::Models(ModelsCmd::Create {
            key,
            targets,
            operations,
            groups,
            policy,
        }) => {
            let r = c
                .create_model(CreateModelRequest {
                    key,
                    targets,
                    operations,
                    policy: Some(RoutePolicy {
                        max_attempts: policy.max_attempts,
                        retry_on_status: policy.retry_on,
                        backoff_ms: policy.backoff_ms,
                        first_byte_timeout_ms: policy.first_byte_timeout_ms,
                        total_timeout_ms: policy.total_timeout_ms,
                        require_price: policy.require_price,
                    }),
                    fleet_groups: groups,
                })
                .await?
                .into_inner();
            p.models(&[r]);
        }
        Command::Models(ModelsCmd::Price {
            model,
            input_price,
            output_price,
            cached_input_price,
        }) => {
            let r = c
                .set_price(SetPriceRequest {
                    model_key: model,
                    input_per_mtok: input_price,
                    cached_input_per_mtok: cached_input_price,
                    output_per_mtok: output_price,
                    ..Default::default()
                })
                .await?
                .into_inner();
            p.price(&r);
        }
        Command::Prices(PricesCmd::Multiplier {
            provider,
            key,
            multiplier,
        }) => {
            let r = c
                .set_price_multiplier(SetPriceMultiplierRequest {
                    provider: provider.unwrap_or_default(),
                    api_key: key.unwrap_or_default(),
                    multiplier,
                })
                .await?
                .into_inner();
            p.multiplier(&r);
        }
        Command::Prices(PricesCmd::Load { file }) => {
            let req = read_price_file(&file)?;
            let r = c.set_prices(req).await?.into_inner();
            for price in &r.prices {
                p.price(price);
            }
        }
        Command::Users(UsersCmd::List) => {
            let r = c.list_users(ListUsersRequest {}).await?.into_inner();
            p.users(&r.users);
        }
        Command::Users(UsersCmd::Create {
            name,
            email,
            no_request_logging,
        }) => {
            let r = c
                .create_user(CreateUserRequest {
                    name,
                    email,
                    request_logging_enabled: Some(!no_request_logging),
                })
                .await?
                .into_inner();
            p.users(&[r]);
        }
        Command::Keys(KeysCmd::List { all }) => {
            let r = c
                .list_api_keys(ListApiKeysRequest {
                    include_revoked: all,
                })
                .await?
                .into_inner();
            p.keys(&r.keys);
        }
        Command::Keys(KeysCmd::Create(k)) => {
            let r = c
                .create_api_key(match k.service_account {
                    Some(sa) => CreateApiKeyRequest {
                        name: k.name,
                        owner_service_account: sa,
                        user: k.user.unwrap_or_default(),
                        allowed_models: k.models,
                        expires_at: k.expires_at,
                        fleet_groups: k.groups,
                        ..Default::default()
                    },
                    None => CreateApiKeyRequest {
                        name: k.name,
                        owner_user: k.user.unwrap_or_default(),
                        allowed_models: k.models,
                        expires_at: k.expires_at,
                        fleet_groups: k.groups,
                        ..Default::default()
                    },
                })
                .await?
                .into_inner();
            if k.secret_only {
                println!("{}", r.secret);
            } else {
                p.created_key(&r);
            }
        }
        Command::Keys(KeysCmd::Revoke { key }) => {
            let r = c
                .revoke_api_key(RevokeApiKeyRequest { key })
                .await?
                .into_inner();
            p.keys(&[r]);
        }
        Command::Logs(LogsCmd::List {
            request_id,
            model,
            user,
            status,
            service,
            component,
            env,
            tag,
            limit,
            cursor,
            provider,
            team,
            harness,
            operation,
            since,
            until,
            feedback_label,
        }) => {
            let (tag_key, tag_value) = match tag.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (tag, String::new()),
            };
            let r = c
                .list_request_logs(ListRequestLogsRequest {
                    request_id,
                    model_key: model,
                    user_id: user,
                    status_code: status,
                    limit,
                    cursor,
                    service,
                    component,
                    env,
                    tag_key,
                    tag_value,
                    provider_key: provider,
                    team_id: team,
                    harness,
                    operation,
                    since,
                    until,
                    feedback_label,
                })
                .await?
                .into_inner();
            p.logs(&r);
        }
        Command::Logs(LogsCmd::Feedback {
            id,
            scores,
            labels,
            comment,
        }) => {
            let mut parsed = std::collections::HashMap::new();
            for (name, v) in scores {
                let n: f64 = v.parse().map_err(|_| Failure {
                    code: 2,
                    message: format!("score {name}={v:?}: not a number"),
                })?;
                parsed.insert(name, n);
            }
            let r = c
                .set_request_log_feedback(SetRequestLogFeedbackRequest {
                    id,
                    scores: parsed,
                    labels,
                    comment,
                })
                .await?
                .into_inner();
            p.feedback(&r);
        }
        Command::Purge {
            dry_run,
            retention,
            action,
        } => match action {
            Some(PurgeCmd::History { limit }) => {
                let r = c
                    .list_purge_runs(ListPurgeRunsRequest { limit })
                    .await?
                    .into_inner();
                p.purge_runs(&r.runs);
            }
            Some(PurgeCmd::Run) if dry_run => {
                return Err(Failure {
                    code: 2,
                    message: "--dry-run and `run` contradict each other: use `weirctl purge --dry-run` or `weirctl purge run`".into(),
                })
            }
            Some(PurgeCmd::Run) | None => {
                if action.is_none() && !dry_run {
                    return Err(Failure {
                        code: 2,
                        message: "say what to do: `weirctl purge --dry-run`, `weirctl purge run` or `weirctl purge history`".into(),
                    });
                }
                let r = c
                    .purge_request_logs(PurgeRequestLogsRequest { dry_run, retention })
                    .await?
                    .into_inner();
                p.purge_runs(std::slice::from_ref(&r));
            }
        },
        Command::Sessions(SessionsCmd::List {
            user_id,
            service_account_id,
            team_id,
            harness,
            model,
            since,
            until,
            has_errors,
            min_cost,
            sort,
            limit,
            cursor,
        }) => {
            let r = c
                .list_sessions(ListSessionsRequest {
                    user_id,
                    service_account_id,
                    team_id,
                    harness,
                    model_key: model,
                    since,
                    until,
                    has_errors,
                    min_cost_usd: min_cost,
                    sort,
                    limit,
                    cursor,
                })
                .await?
                .into_inner();
            p.sessions(&r);
        }
        Command::Sessions(SessionsCmd::Show { id }) => {
            let r = c.get_session(GetSessionRequest { id }).await?.into_inner();
            p.session(&r);
        }
        Command::Leaderboard { range, chart } => {
            let r = c
                .get_leaderboard(GetLeaderboardRequest { range })
                .await?
                .into_inner();
            p.leaderboard(&r, chart);
        }
        Command::Harnesses { range, chart } => {
            let r = c
                .get_harness_usage(GetHarnessUsageRequest { range })
                .await?
                .into_inner();
            p.harness_usage(&r, chart);
        }
        Command::Spend {
            what:
                Some(SpendCmd::Reconcile {
                    provider,
                    from,
                    to,
                    file,
                    weir_providers,
                }),
            ..
        } => {
            let report = match file {
                Some(path) => std::fs::read_to_string(&path).map_err(|e| Failure {
                    code: 7,
                    message: format!("{}: {e}", path.display()),
                })?,
                None => String::new(),
            };
            let r = c
                .reconcile_spend(ReconcileSpendRequest {
                    provider,
                    from,
                    to,
                    report,
                    weir_providers,
                })
                .await?
                .into_inner();
            p.reconciliation(&r);
        }
        Command::Spend {
            what: Some(SpendCmd::Unpriced { since, until }),
            ..
        } => {
            let r = c
                .list_unpriced(ListUnpricedRequest { since, until })
                .await?
                .into_inner();
            p.unpriced(&r);
        }
        Command::Spend {
            what: None,
            by,
            since,
            until,
        } => {
            let r = c
                .get_spend(GetSpendRequest {
                    group_by: by,
                    since,
                    until,
                })
                .await?
                .into_inner();
            p.spend(&r);
        }
        Command::Dataplanes(DataplanesCmd::List) => {
            let r = c
                .list_dataplanes(ListDataplanesRequest {})
                .await?
                .into_inner();
            p.dataplanes(&r.dataplanes);
        }
        Command::Dataplanes(DataplanesCmd::Show { node_id }) => {
            let r = c
                .get_dataplane(GetDataplaneRequest { node_id })
                .await?
                .into_inner();
            p.dataplane(&r);
        }
        Command::Limits(LimitsCmd::List) => {
            let r = c.list_limits(ListLimitsRequest {}).await?.into_inner();
            p.limits(&r.limits);
        }
        Command::Limits(LimitsCmd::Set {
            key,
            user,
            team,
            rpm,
            tpm,
            budget_usd,
            period,
        }) => {
            let subject = match (key, user, team) {
                (Some(k), _, _) => format!("key:{k}"),
                (_, Some(u), _) => format!("user:{u}"),
                (_, _, Some(t)) => format!("team:{t}"),
                _ => {
                    return Err(Failure {
                        code: 2,
                        message: "name the subject: --key, --user or --team".into(),
                    })
                }
            };
            let r = c
                .set_limits(SetLimitsRequest {
                    subject,
                    requests_per_minute: rpm,
                    tokens_per_minute: tpm,
                    budget_usd,
                    budget_period: period,
                })
                .await?
                .into_inner();
            p.limits(&[r]);
        }
        Command::AdminTokens(AdminTokensCmd::List { all }) => {
            let r = c
                .list_admin_tokens(ListAdminTokensRequest {
                    include_revoked: all,
                })
                .await?
                .into_inner();
            p.admin_tokens(&r.tokens);
        }
        Command::AdminTokens(AdminTokensCmd::Create {
            name,
            role,
            team,
            secret_only,
        }) => {
            let r = c
                .create_admin_token(CreateAdminTokenRequest { name, role, team })
                .await?
                .into_inner();
            if secret_only {
                println!("{}", r.secret);
            } else {
                if let Some(t) = &r.token {
                    p.admin_tokens(std::slice::from_ref(t));
                }
                eprintln!("token (shown once): {}", r.secret);
            }
        }
        Command::AdminTokens(AdminTokensCmd::Revoke { id }) => {
            let r = c
                .revoke_admin_token(RevokeAdminTokenRequest { id })
                .await?
                .into_inner();
            p.admin_tokens(&[r]);
        }
        Command::Teams(TeamsCmd::List) => {
            let r = c.list_teams(ListTeamsRequest {}).await?.into_inner();
            p.teams(&r.teams);
        }
        Command::Teams(TeamsCmd::Create { name }) => {
            let r = c
                .create_team(CreateTeamRequest { name })
                .await?
                .into_inner();
            p.teams(&[r]);
        }
        Command::Teams(TeamsCmd::AddMember { team, user }) => {
            let r = c
                .add_team_member(TeamMemberRequest { team, user })
                .await?
                .into_inner();
            p.teams(&[r]);
        }
        Command::Teams(TeamsCmd::RemoveMember { team, user }) => {
            let r = c
                .remove_team_member(TeamMemberRequest { team, user })
                .await?
                .into_inner();
            p.teams(&[r]);
        }
        Command::ServiceAccounts(ServiceAccountsCmd::List { team }) => {
            let r = c
                .list_service_accounts(ListServiceAccountsRequest { team })
                .await?
                .into_inner();
            p.service_accounts(&r.service_accounts);
        }
        Command::ServiceAccounts(ServiceAccountsCmd::Create { name, team }) => {
            let r = c
                .create_service_account(CreateServiceAccountRequest { name, team })
                .await?
                .into_inner();
            p.service_accounts(&[r]);
        }
        Command::Sinks(SinksCmd::List) => {
            let r = c
                .list_telemetry_sinks(ListTelemetrySinksRequest {})
                .await?
                .into_inner();
            p.sinks(&r.sinks);
        }
        Command::Sinks(SinksCmd::Create {
            name,
            endpoint,
            protocol,
            kind,
            headers_from_env,
            sample_ratio,
            metrics,
            capture_content,
            legacy_attributes,
            new_root,
            options,
            secrets_from_env,
        }) => {
            let r = c
                .create_telemetry_sink(TelemetrySink {
                    name,
                    kind,
                    endpoint,
                    protocol,
                    headers_from_env: headers_from_env.into_iter().collect(),
                    sample_ratio,
                    metrics,
                    created_at: String::new(),
                    capture_content,
                    legacy_attributes,
                    new_root,
                    options: options.into_iter().collect(),
                    secrets_from_env: secrets_from_env.into_iter().collect(),
                })
                .await?
                .into_inner();
            p.sinks(&[r]);
        }
        Command::Sinks(SinksCmd::Delete { name }) => {
            c.delete_telemetry_sink(DeleteTelemetrySinkRequest { name: name.clone() })
                .await?;
            // What is left, so the operator sees the effect.
            let r = c
                .list_telemetry_sinks(ListTelemetrySinksRequest {})
                .await?
                .into_inner();
            p.sinks(&r.sinks);
        }
        Command::Policy(PolicyCmd::Show { group }) => {
            let r = c
                .get_payload_policy(GetPayloadPolicyRequest { fleet_group: group })
                .await?
                .into_inner();
            p.policy(&r);
        }
        Command::Policy(PolicyCmd::Set {
            group,
            capture_mode,
            request_max_bytes,
            response_max_bytes,
            stream_max_events,
            redaction_paths,
            clear_redactions,
        }) => {
            let replace = clear_redactions || !redaction_paths.is_empty();
            let r = c
                .set_payload_policy(SetPayloadPolicyRequest {
                    capture_mode,
                    request_max_bytes,
                    response_max_bytes,
                    stream_max_events,
                    redaction_paths,
                    replace_redaction_paths: replace,
                    fleet_group: group,
                })
                .await?
                .into_inner();
            p.policy(&r);
        }
        Command::Logs(LogsCmd::Show { id }) => {
            let r = c
                .get_request_log(GetRequestLogRequest { id })
                .await?
                .into_inner();
            p.log_detail(&r);
        }
    }
    Ok(())
}
