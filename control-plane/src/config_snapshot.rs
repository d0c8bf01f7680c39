//! The config snapshot: every resource type at its current version, read from Postgres in one
//! consistent transaction, and published to every stream of this replica through a `watch`.
//!
//! Admin writes bump `config_versions` and `NOTIFY weir_config` in their transaction, so every
//! replica (not only the one that took the write) reloads; a slow poll covers a lost
//! notification or a reconnecting listener.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;
use weir_proto::config::{
    discovery_response::Resources, ApiKey, ApiKeyDelta, ApiKeySet, LimitSet, ModelPrice,
    PayloadPolicy, PriceSet, Provider, ProviderSet, ResourceType, Route, RoutePolicy, RouteSet,
    SubjectLimit, Target, TelemetrySink, TelemetrySinkSet,
};

use crate::budget_spend;
use crate::provider_secrets::{SecretBox, SecretError};

/// The NOTIFY channel admin writes signal on.
pub const CHANNEL: &str = "weir_config";

/// How often the snapshot is re-read even without a notification.
const POLL: Duration = Duration::from_secs(5);

/// The resource types the stream serves, in the order a node should apply them.
pub const TYPES: [ResourceType; 7] = [
    ResourceType::Providers,
    ResourceType::Routes,
    ResourceType::PayloadPolicy,
    ResourceType::Pricing,
    ResourceType::Limits,
    ResourceType::ApiKeys,
    ResourceType::TelemetrySinks,
];

/// Ledger rows younger than this are left out of fleet spend sums: they may still be in flight
/// from nodes, which count them locally until a sum taken after them arrives.
pub const SPEND_MARGIN_MS: i64 = 2_000;

/// The `config_versions` name of a type.
pub fn type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Providers => "providers",
        ResourceType::Routes => "routes",
        ResourceType::ApiKeys => "api_keys",
        ResourceType::PayloadPolicy => "payload_policy",
        ResourceType::Limits => "limits",
        ResourceType::Pricing => "pricing",
        ResourceType::TelemetrySinks => "telemetry_sinks",
        ResourceType::Unspecified => "unspecified",
    }
}

/// One resource type at one version.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Opaque to nodes; the `config_versions` counter.
    pub version: String,
    /// The full set of resources of the type.
    pub resources: Arc<Resources>,
}

/// Every type at its current version.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    entries: BTreeMap<i32, Entry>,
    /// The last changes of the key set, oldest first, so nodes get deltas.
    key_deltas: Arc<VecDeque<KeyDelta>>,
    /// Payload policies of groups that have their own (the entry holds the default).
    group_policies: Arc<HashMap<String, PayloadPolicy>>,
    /// The key set by id, for incremental reloads.
    key_index: Arc<KeyIndex>,
}

impl ConfigSnapshot {
    /// The entry of `t`, when loaded.
    pub fn get(&self, t: ResourceType) -> Option<&Entry> {
        self.entries.get(&(t as i32))
    }

    /// `resources` as a node of `group` may see them: routes and keys scoped to other groups
    /// left out, and the group's own payload policy if it has one.
    pub fn for_group(&self, resources: &Resources, group: &str) -> Resources {
        let in_group = |groups: &[String]| groups.is_empty() || groups.iter().any(|g| g == group);
        match resources {
            Resources::Routes(set) => Resources::Routes(RouteSet {
                routes: set
                    .routes
                    .iter()
                    .filter(|r| in_group(&r.fleet_groups))
                    .cloned()
                    .collect(),
            }),
            Resources::ApiKeys(set) if set.keys.iter().any(|k| !in_group(&k.fleet_groups)) => {
                Resources::ApiKeys(ApiKeySet {
                    keys: set
                        .keys
                        .iter()
                        .filter(|k| in_group(&k.fleet_groups))
                        .cloned()
                        .collect(),
                })
            }
            Resources::ApiKeyDelta(d) => {
                let (keep, drop): (Vec<&ApiKey>, Vec<&ApiKey>) =
                    d.upserts.iter().partition(|k| in_group(&k.fleet_groups));
                Resources::ApiKeyDelta(ApiKeyDelta {
                    base_version: d.base_version.clone(),
                    upserts: keep.into_iter().cloned().collect(),
                    // A key moved out of the group must leave nodes that hold it.
                    removed_ids: d
                        .removed_ids
                        .iter()
                        .cloned()
                        .chain(drop.into_iter().map(|k| k.id.clone()))
                        .collect(),
                })
            }
            Resources::PayloadPolicy(default) => Resources::PayloadPolicy(
                self.group_policies
                    .get(group)
                    .cloned()
                    .unwrap_or_else(|| default.clone()),
            ),
            other => other.clone(),
        }
    }

    /// The key changes from version `base` to the current one, when this replica still has
    /// every step; `None` means send the full set.
    pub fn key_delta_since(&self, base: &str) -> Option<KeyDelta> {
        let current = &self.get(ResourceType::ApiKeys)?.version;
        let start = self.key_deltas.iter().position(|d| d.from == base)?;
        let mut out = KeyDelta {
            from: base.to_string(),
            to: base.to_string(),
            ..Default::default()
        };
        for d in self.key_deltas.iter().skip(start) {
            if d.from != out.to {
                return None;
            }
            for id in &d.removed {
                out.upserts.remove(id);
                out.removed.insert(id.clone());
            }
            for (id, k) in &d.upserts {
                out.removed.remove(id);
                out.upserts.insert(id.clone(), k.clone());
            }
            out.to = d.to.clone();
        }
        (&out.to == current).then_some(out)
    }
}

/// How the key set changed from one version to the next.
#[derive(Debug, Clone, Default)]
pub struct KeyDelta {
    /// Version it applies to.
    pub from: String,
    /// Version it produces.
    pub to: String,
    /// Keys added or changed, by id.
    pub upserts: HashMap<String, ApiKey>,
    /// Keys gone, by id.
    pub removed: HashSet<String>,
}

/// The key set as this replica last read it, for incremental reloads.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    /// Highest `api_keys.change_seq` read.
    seq: i64,
    /// Active keys by id.
    by_id: imbl::HashMap<String, ApiKey>,
    /// When the whole set was last read (a full read now and then also drops expired keys).
    full_at: Option<std::time::Instant>,
}

/// How often the whole key set is re-read even when incremental reads would do.
const FULL_KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(600);

/// Key deltas kept per replica.
const KEY_DELTAS_KEPT: usize = 64;

fn diff_keys(from: &str, to: &str, old: &ApiKeySet, new: &ApiKeySet) -> KeyDelta {
    let old_by_id: HashMap<&str, &ApiKey> = old.keys.iter().map(|k| (k.id.as_str(), k)).collect();
    let new_ids: HashSet<&str> = new.keys.iter().map(|k| k.id.as_str()).collect();
    KeyDelta {
        from: from.to_string(),
        to: to.to_string(),
        upserts: new
            .keys
            .iter()
            .filter(|k| old_by_id.get(k.id.as_str()) != Some(k))
            .map(|k| (k.id.clone(), k.clone()))
            .collect(),
        removed: old
            .keys
            .iter()
            .filter(|k| !new_ids.contains(k.id.as_str()))
            .map(|k| k.id.clone())
            .collect(),
    }
}

/// Reads and republishes the snapshot.
#[derive(Clone)]
pub struct ConfigHub {
    pool: PgPool,
    secrets: Option<Arc<SecretBox>>,
    tx: Arc<watch::Sender<Arc<ConfigSnapshot>>>,
}

impl ConfigHub {
    /// Loads the first snapshot.
    pub async fn load(pool: PgPool, secrets: Option<Arc<SecretBox>>) -> Result<Self, sqlx::Error> {
        let snap = read_snapshot(&pool, secrets.as_deref(), &ConfigSnapshot::default()).await?;
        let (tx, _) = watch::channel(Arc::new(snap));
        Ok(ConfigHub {
            pool,
            secrets,
            tx: Arc::new(tx),
        })
    }

    /// A receiver that sees every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigSnapshot>> {
        self.tx.subscribe()
    }

    /// Re-reads the snapshot now and publishes it if any version moved.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let current = self.tx.borrow().clone();
        let next = read_snapshot(&self.pool, self.secrets.as_deref(), &current).await?;
        let changed = TYPES
            .iter()
            .any(|t| next.get(*t).map(|e| &e.version) != current.get(*t).map(|e| &e.version));
        if changed {
            self.tx.send_replace(Arc::new(next));
        }
        Ok(())
    }

    /// Follows `NOTIFY weir_config` (and polls) until the process stops.
    pub async fn follow(self) {
        loop {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "config listener could not LISTEN");
                    } else {
                        // Anything that changed while we were not listening.
                        self.refresh_logged().await;
                        loop {
                            match tokio::time::timeout(POLL, listener.try_recv()).await {
                                Ok(Ok(Some(_))) | Err(_) => self.refresh_logged().await,
                                Ok(Ok(None)) => {
                                    // The connection dropped and reconnected; re-read.
                                    self.refresh_logged().await;
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "config listener failed");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "config listener cannot connect"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn refresh_logged(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "reloading config snapshot failed; nodes keep the last one");
        }
    }
}

/// Records an admin change to `t` inside the caller's transaction: bumps its version and
/// notifies every replica at commit.
pub async fn bump(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    t: ResourceType,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE config_versions SET version = version + 1, updated_at = now() WHERE resource_type = $1",
    )
    .bind(type_name(t))
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(type_name(t))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads every type whose version differs from `previous`, reusing the rest.
async fn read_snapshot(
    pool: &PgPool,
    secrets: Option<&SecretBox>,
    previous: &ConfigSnapshot,
) -> Result<ConfigSnapshot, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let versions: Vec<(String, i64)> =
        sqlx::query_as("SELECT resource_type, version FROM config_versions")
            .fetch_all(&mut *tx)
            .await?;
    let mut snap = ConfigSnapshot {
        key_deltas: previous.key_deltas.clone(),
        key_index: previous.key_index.clone(),
        ..Default::default()
    };
    for t in TYPES {
        let Some((_, v)) = versions.iter().find(|(name, _)| name == type_name(t)) else {
            continue;
        };
        let version = v.to_string();
        if t == ResourceType::Limits {
            // Limits carry fleet spend, which moves without an admin change: re-read it every
            // time, and publish a new version only when limits or sums changed.
            let limits = read_limits(&mut tx).await?;
            let unchanged = previous.get(t).is_some_and(|e| {
                e.version.split('.').next() == Some(version.as_str())
                    && matches!(&*e.resources, Resources::Limits(old) if same_limits(old, &limits))
            });
            if unchanged {
                snap.entries
                    .insert(t as i32, previous.get(t).expect("checked").clone());
            } else {
                let as_of = limits.limits.first().map_or(0, |l| l.spent_as_of_unix_ms);
                snap.entries.insert(
                    t as i32,
                    Entry {
                        version: format!("{version}.{as_of}"),
                        resources: Arc::new(Resources::Limits(limits)),
                    },
                );
            }
            continue;
        }
        if let Some(old) = previous.get(t).filter(|e| e.version == version) {
            if t == ResourceType::PayloadPolicy {
                snap.group_policies = previous.group_policies.clone();
            }
            snap.entries.insert(t as i32, old.clone());
            continue;
        }
        let resources = match t {
            ResourceType::Providers => {
                Resources::Providers(read_providers(&mut tx, secrets).await?)
            }
            ResourceType::Routes => Resources::Routes(read_routes(&mut tx).await?),
            ResourceType::ApiKeys => {
                let (index, changes) = read_keys(&mut tx, &previous.key_index).await?;
                let set = ApiKeySet {
                    keys: index.by_id.values().cloned().collect(),
                };
                if let Some(old) = previous.get(t) {
                    let delta = match (changes, &*old.resources) {
                        (Some((upserts, removed)), _) => Some(KeyDelta {
                            from: old.version.clone(),
                            to: version.clone(),
                            upserts,
                            removed,
                        }),
                        (None, Resources::ApiKeys(old_set)) => {
                            Some(diff_keys(&old.version, &version, old_set, &set))
                        }
                        _ => None,
                    };
                    if let Some(d) = delta {
                        let mut deltas = (*snap.key_deltas).clone();
                        deltas.push_back(d);
                        while deltas.len() > KEY_DELTAS_KEPT {
                            deltas.pop_front();
                        }
                        snap.key_deltas = Arc::new(deltas);
                    }
                }
                snap.key_index = Arc::new(index);
                Resources::ApiKeys(set)
            }
            ResourceType::PayloadPolicy => {
                let mut all = read_payload_policies(&mut tx).await?;
                let default = all.remove("").unwrap_or_default();
                snap.group_policies = Arc::new(all);
                Resources::PayloadPolicy(default)
            }
            ResourceType::Pricing => Resources::Pricing(read_pricing(&mut tx).await?),
            ResourceType::TelemetrySinks => {
                Resources::TelemetrySinks(read_telemetry_sinks(&mut tx).await?)
            }
            ResourceType::Limits | ResourceType::Unspecified => continue,
        };
        snap.entries.insert(
            t as i32,
            Entry {
                version,
                resources: Arc::new(resources),
            },
        );
    }
    tx.commit().await?;
    Ok(snap)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// A stored multiplier for the wire: absent when it changes nothing.
fn multiplier(ppm: i32) -> Option<u32> {
    let ppm = ppm.max(0) as u32;
    (ppm != weir_proto::pricing::PPM_ONE).then_some(ppm)
}

async fn read_providers(
    tx: &mut Tx<'_>,
    secrets: Option<&SecretBox>,
) -> Result<ProviderSet, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, key, kind, base_url, api_key_env, extra_headers, auth_header, secret_sealed,
                price_multiplier_ppm
         FROM providers ORDER BY key",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut providers = Vec::with_capacity(rows.len());
    for r in rows {
        let key: String = r.get("key");
        let sealed: Option<Vec<u8>> = r.get("secret_sealed");
        // A secret that cannot be opened fails the whole read: nodes keep their last good
        // providers rather than calling an upstream without credentials.
        let api_key = match (sealed, secrets) {
            (None, _) => String::new(),
            (Some(s), Some(b)) => b
                .open(&r.get::<Uuid, _>("id").to_string(), &key, &s)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            (Some(_), None) => {
                return Err(sqlx::Error::Decode(Box::new(SecretError::NoKey)));
            }
        };
        providers.push(Provider {
            key,
            kind: r.get("kind"),
            base_url: r.get("base_url"),
            api_key_env: r.get("api_key_env"),
            extra_headers: serde_json::from_value(r.get("extra_headers")).unwrap_or_default(),
            auth_header: r.get("auth_header"),
            api_key,
            price_multiplier_ppm: multiplier(r.get("price_multiplier_ppm")),
        });
    }
    Ok(ProviderSet { providers })
}

async fn read_telemetry_sinks(tx: &mut Tx<'_>) -> Result<TelemetrySinkSet, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, kind, endpoint, protocol, headers_from_env, sample_ratio, metrics,
                capture_content, legacy_attributes, new_root, options, secrets_from_env
         FROM telemetry_sinks ORDER BY name",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(TelemetrySinkSet {
        sinks: rows.iter().map(sink_from_row).collect(),
    })
}

/// A `telemetry_sinks` row as the config message (also what the admin API returns).
pub fn sink_from_row(r: &sqlx::postgres::PgRow) -> TelemetrySink {
    TelemetrySink {
        name: r.get("name"),
        kind: r.get("kind"),
        endpoint: r.get("endpoint"),
        protocol: r.get("protocol"),
        headers_from_env: serde_json::from_value(r.get("headers_from_env")).unwrap_or_default(),
        sample_ratio: r.get("sample_ratio"),
        metrics: r.get("metrics"),
        capture_content: r.get("capture_content"),
        legacy_attributes: r.get("legacy_attributes"),
        new_root: r.get("new_root"),
        options: serde_json::from_value(r.get("options")).unwrap_or_default(),
        secrets_from_env: serde_json::from_value(r.get("secrets_from_env")).unwrap_or_default(),
    }
}

/// A route policy as stored in `models.route_policy`.
pub fn policy_to_json(p: &RoutePolicy) -> serde_json::Value {
    serde_json::json!({
        "max_attempts": p.max_attempts,
        "retry_on_status": p.retry_on_status,
        "backoff_ms": p.backoff_ms,
        "first_byte_timeout_ms": p.first_byte_timeout_ms,
        "total_timeout_ms": p.total_timeout_ms,
        "require_price": p.require_price,
    })
}

/// The stored form back; missing fields are defaults.
pub fn policy_from_json(v: &serde_json::Value) -> RoutePolicy {
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
    RoutePolicy {
        max_attempts: n("max_attempts"),
        retry_on_status: v
            .get("retry_on_status")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_u64())
                    .map(|s| s as u32)
                    .collect()
            })
            .unwrap_or_default(),
        backoff_ms: n("backoff_ms"),
        first_byte_timeout_ms: n("first_byte_timeout_ms"),
        total_timeout_ms: n("total_timeout_ms"),
        require_price: v
            .get("require_price")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    }
}

async fn read_routes(tx: &mut Tx<'_>) -> Result<RouteSet, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.key AS model_key, m.operations, m.route_policy, m.fleet_groups,
                p.key AS provider_key, t.upstream_model, t.weight
         FROM models m
         JOIN model_targets t ON t.model_id = m.id
         JOIN providers p ON p.id = t.provider_id
         ORDER BY m.key, t.position",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut routes: Vec<Route> = Vec::new();
    for r in rows {
        let model_key: String = r.get("model_key");
        let target = Target {
            provider_key: r.get("provider_key"),
            upstream_model: r.get("upstream_model"),
            weight: r.get::<i32, _>("weight").max(0) as u32,
        };
        match routes.last_mut() {
            Some(last) if last.model_key == model_key => last.targets.push(target),
            _ => routes.push(Route {
                model_key,
                targets: vec![target],
                operations: r.get("operations"),
                policy: Some(policy_from_json(
                    &r.get::<serde_json::Value, _>("route_policy"),
                )),
                fleet_groups: r.get("fleet_groups"),
            }),
        }
    }
    Ok(RouteSet { routes })
}

/// Changes since the last read: upserts and removals by id.
type KeyChanges = (HashMap<String, ApiKey>, HashSet<String>);

/// Reads the keys changed since `prev` (or all of them, on the first read and every
/// [`FULL_KEY_RELOAD`]); the changes are `None` after a full read.
async fn read_keys(
    tx: &mut Tx<'_>,
    prev: &KeyIndex,
) -> Result<(KeyIndex, Option<KeyChanges>), sqlx::Error> {
    let incremental = prev.full_at.is_some_and(|t| t.elapsed() < FULL_KEY_RELOAD);
    let rows = sqlx::query(
        "SELECT k.id, k.key_hash, k.display_prefix, k.owner_user_id, k.owner_service_account_id,
                k.user_id, k.team_id, k.allowed_models, k.expires_at, k.fleet_groups, k.change_seq,
                k.price_multiplier_ppm,
                COALESCE(u.request_logging_enabled, true) AS request_logging_enabled,
                (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active
         FROM api_keys k
         LEFT JOIN users u ON u.id = k.owner_user_id
         WHERE k.change_seq > $1 AND ($2 OR k.revoked_at IS NULL)",
    )
    .bind(if incremental { prev.seq } else { 0 })
    .bind(incremental)
    .fetch_all(&mut **tx)
    .await?;
    let max_seq: i64 = sqlx::query_scalar("SELECT COALESCE(max(change_seq), 0) FROM api_keys")
        .fetch_one(&mut **tx)
        .await?;
    let id = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    let mut by_id = if incremental {
        prev.by_id.clone()
    } else {
        imbl::HashMap::new()
    };
    let (mut upserts, mut removed) = (HashMap::new(), HashSet::new());
    for r in rows {
        let key = ApiKey {
            id: r.get::<Uuid, _>("id").to_string(),
            key_hash: r.get("key_hash"),
            display_prefix: r.get("display_prefix"),
            owner_user_id: id(r.get("owner_user_id")),
            owner_service_account_id: id(r.get("owner_service_account_id")),
            user_id: id(r.get("user_id")),
            team_id: id(r.get("team_id")),
            allowed_models: r.get("allowed_models"),
            expires_at_unix_ms: r
                .get::<Option<chrono::DateTime<chrono::Utc>>, _>("expires_at")
                .map(|t| t.timestamp_millis())
                .unwrap_or(0),
            request_logging_enabled: r.get("request_logging_enabled"),
            fleet_groups: r.get("fleet_groups"),
            price_multiplier_ppm: multiplier(r.get("price_multiplier_ppm")),
        };
        if r.get::<bool, _>("active") {
            upserts.insert(key.id.clone(), key.clone());
            by_id.insert(key.id.clone(), key);
        } else if by_id.remove(&key.id).is_some() {
            removed.insert(key.id);
        }
    }
    let index = KeyIndex {
        seq: max_seq.max(prev.seq),
        by_id,
        full_at: if incremental {
            prev.full_at
        } else {
            Some(std::time::Instant::now())
        },
    };
    Ok((index, incremental.then_some((upserts, removed))))
}

/// Limits equal but for when their spend was summed.
fn same_limits(a: &LimitSet, b: &LimitSet) -> bool {
    a.limits.len() == b.limits.len()
        && a.limits.iter().zip(&b.limits).all(|(x, y)| {
            SubjectLimit {
                spent_as_of_unix_ms: 0,
                ..x.clone()
            } == SubjectLimit {
                spent_as_of_unix_ms: 0,
                ..y.clone()
            }
        })
}

/// A subject's limits as stored in a `limits` jsonb column.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredLimits {
    /// Requests per minute; 0 none.
    #[serde(default)]
    pub requests_per_minute: u64,
    /// Tokens per minute; 0 none.
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Budget in picodollars.
    #[serde(default)]
    pub budget_pusd: Option<i64>,
    /// "day" | "month" | "total".
    #[serde(default)]
    pub budget_period: String,
}

impl StoredLimits {
    /// The budget period, `month` when none was stored.
    pub fn period(&self) -> String {
        if self.budget_period.is_empty() {
            "month".to_string()
        } else {
            self.budget_period.clone()
        }
    }
}

/// Reads every subject with limits, and the fleet spend of those with budgets.
async fn read_limits(tx: &mut Tx<'_>) -> Result<LimitSet, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT 'key' AS kind, id, limits FROM api_keys WHERE limits <> '{}' AND revoked_at IS NULL
         UNION ALL SELECT 'user', id, limits FROM users WHERE limits <> '{}'
         UNION ALL SELECT 'team', id, limits FROM teams WHERE limits <> '{}'
         ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    let as_of_ms: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint - $1")
            .bind(SPEND_MARGIN_MS)
            .fetch_one(&mut **tx)
            .await?;
    let mut stored_limits = Vec::with_capacity(rows.len());
    let mut budgeted = Vec::new();
    for r in &rows {
        let kind: String = r.get("kind");
        let id: Uuid = r.get("id");
        let stored: StoredLimits = serde_json::from_value(r.get("limits")).unwrap_or_default();
        let period = stored.period();
        if stored.budget_pusd.is_some() {
            budgeted.push(budget_spend::Subject {
                kind: kind.clone(),
                id,
                period: period.clone(),
            });
        }
        stored_limits.push((kind, id, stored, period));
    }
    let mut spent = budget_spend::spends(tx, &budgeted, as_of_ms)
        .await?
        .into_iter();
    let mut limits = Vec::with_capacity(stored_limits.len());
    for (kind, id, stored, period) in stored_limits {
        let spent = match stored.budget_pusd {
            Some(_) => spent.next().unwrap_or(0),
            None => 0,
        };
        limits.push(SubjectLimit {
            subject: format!("{kind}:{id}"),
            requests_per_minute: stored.requests_per_minute,
            tokens_per_minute: stored.tokens_per_minute,
            budget_pusd: stored.budget_pusd,
            budget_period: period,
            fleet_spent_pusd: spent,
            spent_as_of_unix_ms: as_of_ms,
        });
    }
    Ok(LimitSet { limits })
}

/// For every priced model, the version in force now and any that start later.
async fn read_pricing(tx: &mut Tx<'_>) -> Result<PriceSet, sqlx::Error> {
    let rows = sqlx::query(
        "(SELECT DISTINCT ON (model_key) id, model_key, input_pusd_per_token,
                cached_input_pusd_per_token, output_pusd_per_token, extra, valid_from
          FROM prices WHERE valid_from <= now()
          ORDER BY model_key, valid_from DESC, id DESC)
         UNION ALL
         (SELECT id, model_key, input_pusd_per_token, cached_input_pusd_per_token,
                 output_pusd_per_token, extra, valid_from
          FROM prices WHERE valid_from > now())
         ORDER BY model_key, valid_from, id",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(PriceSet {
        prices: rows
            .into_iter()
            .map(|r| {
                let extra: serde_json::Value = r.get("extra");
                let valid_from: chrono::DateTime<chrono::Utc> = r.get("valid_from");
                ModelPrice {
                    model_key: r.get("model_key"),
                    input_pusd_per_token: r.get("input_pusd_per_token"),
                    cached_input_pusd_per_token: r.get("cached_input_pusd_per_token"),
                    output_pusd_per_token: r.get("output_pusd_per_token"),
                    price_id: r.get("id"),
                    extra_json: extra.to_string(),
                    valid_from_unix_ms: valid_from.timestamp_millis(),
                }
            })
            .collect(),
    })
}

/// Every group's payload policy; the `''` row is the default for groups without their own.
async fn read_payload_policies(
    tx: &mut Tx<'_>,
) -> Result<HashMap<String, PayloadPolicy>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT fleet_group, capture_mode, request_max_bytes, response_max_bytes, stream_max_events,
                redaction_paths
         FROM payload_policies",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get("fleet_group"),
                PayloadPolicy {
                    capture_mode: r.get("capture_mode"),
                    request_max_bytes: r.get::<i32, _>("request_max_bytes") as u32,
                    response_max_bytes: r.get::<i32, _>("response_max_bytes") as u32,
                    stream_max_events: r.get::<i32, _>("stream_max_events") as u32,
                    redaction_paths: r.get("redaction_paths"),
                },
            )
        })
        .collect())
}
