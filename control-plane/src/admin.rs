//! The admin service (`weir.admin.v1.Admin`): every operator operation, authenticated by admin
//! token, with one error type mapped once to gRPC status codes.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{PgPool, Row};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use weir_proto::admin::admin_server::Admin;
use weir_proto::admin::*;
use weir_proto::config::{self as cfg, ResourceType};
use weir_proto::validate;

use crate::config_snapshot::{bump, policy_from_json, policy_to_json, sink_from_row, StoredLimits};
use crate::leaderboard::{self, Range};
use crate::provider_secrets::{SecretBox, SecretError};
use crate::purge::{PurgeError, Purger};
use crate::sessions;
use crate::usage_rollup;
use weir_proto::pricing;

/// Everything an admin call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid admin token")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<crate::reconcile::ReconcileError> for AdminError {
    fn from(e: crate::reconcile::ReconcileError) -> Self {
        use crate::reconcile::ReconcileError as R;
        match e {
            R::Database(e) => AdminError::Database(e),
            R::Invalid(_) | R::Report(_) => AdminError::Invalid(e.to_string()),
            R::UnknownProvider(_) => AdminError::NotFound(e.to_string()),
            R::NoProviders { .. } | R::Fetch(_) => AdminError::Precondition(e.to_string()),
        }
    }
}

impl From<PurgeError> for AdminError {
    fn from(e: PurgeError) -> Self {
        match e {
            PurgeError::Database(e) => AdminError::Database(e),
            busy @ PurgeError::Busy(_) => AdminError::Precondition(busy.to_string()),
        }
    }
}

impl From<SecretError> for AdminError {
    fn from(e: SecretError) -> Self {
        AdminError::Precondition(e.to_string())
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Status {
        let msg = e.to_string();
        match e {
            AdminError::Unauthenticated => Status::unauthenticated(msg),
            AdminError::PermissionDenied(_) => Status::permission_denied(msg),
            AdminError::NotFound(_) => Status::not_found(msg),
            AdminError::AlreadyExists(_) => Status::already_exists(msg),
            AdminError::Invalid(_) => Status::invalid_argument(msg),
            AdminError::Precondition(_) => Status::failed_precondition(msg),
            AdminError::Database(_) => Status::unavailable(msg),
        }
    }
}

impl From<validate::Invalid> for AdminError {
    fn from(e: validate::Invalid) -> Self {
        AdminError::Invalid(e.message)
    }
}

/// Maps a unique violation to `AlreadyExists` with `what` in the message.
fn unique(what: String) -> impl FnOnce(sqlx::Error) -> AdminError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            AdminError::AlreadyExists(format!("{what} already exists"))
        }
        _ => AdminError::Database(e),
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Sees and changes everything.
    PlatformAdmin,
    /// Reads only its team's logs.
    TeamViewer(Uuid),
}

/// The bearer token of a call (an admin token or, for feedback, a gateway key).
fn bearer<T>(req: &Request<T>) -> Result<&str, AdminError> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AdminError::Unauthenticated)
}

/// Whose request logs a feedback call may touch.
enum FeedbackScope {
    Any,
    /// A user's own keys' logs (not those of service accounts attributed to the user).
    User(Uuid),
    ServiceAccount(Uuid),
}

/// Serves `weir.admin.v1.Admin`.
pub struct AdminService {
    pool: PgPool,
    secrets: Option<Arc<SecretBox>>,
    purger: Arc<Purger>,
    reconcile: crate::reconcile::fetch::Sources,
}

impl AdminService {
    /// A service on `pool`; `secrets` seals provider secrets (none: storing one is refused);
    /// `purger` runs manual purges.
    pub fn new(
        pool: PgPool,
        secrets: Option<Arc<SecretBox>>,
        purger: Arc<Purger>,
        reconcile: crate::reconcile::fetch::Sources,
    ) -> Self {
        AdminService {
            reconcile,
            pool,
            secrets,
            purger,
        }
    }

    async fn admin_token(&self, id: Uuid) -> Result<AdminToken, AdminError> {
        let row = sqlx::query(&format!("{ADMIN_TOKEN_SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(admin_token_from_row(&row))
    }

    /// A service account by id or `team/name`: (id, `team/name`, team id).
    async fn find_service_account(&self, sa: &str) -> Result<(Uuid, String, Uuid), AdminError> {
        let (team, name) = sa.split_once('/').unwrap_or(("", sa));
        sqlx::query_as(
            "SELECT sa.id, t.name || '/' || sa.name, sa.team_id
             FROM service_accounts sa JOIN teams t ON t.id = sa.team_id
             WHERE sa.id::text = $1 OR (sa.name = $3 AND (t.name = $2 OR t.id::text = $2))
             ORDER BY (sa.id::text = $1) DESC LIMIT 1",
        )
        .bind(sa)
        .bind(team)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            AdminError::NotFound(format!(
                "service account {sa:?} not found (give its id or team/name)"
            ))
        })
    }

    fn seal(&self, provider_id: Uuid, secret: &str) -> Result<Option<Vec<u8>>, AdminError> {
        if secret.is_empty() {
            return Ok(None);
        }
        let b = self.secrets.as_ref().ok_or(SecretError::NoKey)?;
        Ok(Some(b.seal(&provider_id.to_string(), secret)?))
    }

    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, AdminError> {
        let hash = weir_proto::api_key::hash(bearer(req)?);
        let row = sqlx::query(
            "SELECT role, team_id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?
        .ok_or(AdminError::Unauthenticated)?;
        let role: String = row.get("role");
        match (role.as_str(), row.get::<Option<Uuid>, _>("team_id")) {
            ("platform_admin", _) => Ok(Caller::PlatformAdmin),
            ("team_viewer", Some(team)) => Ok(Caller::TeamViewer(team)),
            _ => Err(AdminError::Unauthenticated),
        }
    }

    /// Whose request logs the caller may attach feedback to: a platform admin any, a gateway
    /// key only those of its own owner (so a product can rate its own answers).
    async fn feedback_scope<T>(&self, req: &Request<T>) -> Result<FeedbackScope, AdminError> {
        let token = bearer(req)?;
        if !weir_proto::api_key::looks_like_key(token) {
            self.admin(req).await?;
            return Ok(FeedbackScope::Any);
        }
        let hash = weir_proto::api_key::hash(token);
        let row: Option<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "SELECT owner_user_id, owner_service_account_id FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((Some(user), _)) => Ok(FeedbackScope::User(user)),
            Some((None, Some(sa))) => Ok(FeedbackScope::ServiceAccount(sa)),
            _ => Err(AdminError::Unauthenticated),
        }
    }

    async fn admin<T>(&self, req: &Request<T>) -> Result<(), AdminError> {
        match self.caller(req).await? {
            Caller::PlatformAdmin => Ok(()),
            Caller::TeamViewer(_) => Err(AdminError::PermissionDenied(
                "this operation needs a platform_admin token".into(),
            )),
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_default()
}

/// Serialises key changes (on the api_keys version row) before they take a change sequence
/// number, so sequence order is commit order and an incremental reload never skips one.
async fn lock_keys(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), AdminError> {
    sqlx::query("SELECT 1 FROM config_versions WHERE resource_type = 'api_keys' FOR UPDATE")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The one key `wanted` names (its id or display prefix); revoked keys only if asked.
async fn find_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    wanted: &str,
    with_revoked: bool,
) -> Result<Uuid, AdminError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM api_keys WHERE (id::text = $1 OR display_prefix = $1)
           AND ($2 OR revoked_at IS NULL)",
    )
    .bind(wanted)
    .bind(with_revoked)
    .fetch_all(&mut **tx)
    .await?;
    match ids.as_slice() {
        [] => Err(AdminError::NotFound(format!("key {wanted:?} not found"))),
        [id] => Ok(*id),
        _ => Err(AdminError::Invalid(format!(
            "{} keys share the prefix {wanted:?}; name the key by id",
            ids.len()
        ))),
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Provider columns for [`provider_from_row`]; the sealed secret only as a flag.
const PROVIDER_COLUMNS: &str = "id, key, kind, base_url, api_key_env, extra_headers, created_at,
     auth_header, secret_sealed IS NOT NULL AS secret_stored";

fn provider_from_row(r: &sqlx::postgres::PgRow) -> Provider {
    Provider {
        id: r.get::<Uuid, _>("id").to_string(),
        key: r.get("key"),
        kind: r.get("kind"),
        base_url: r.get("base_url"),
        api_key_env: r.get("api_key_env"),
        extra_headers: serde_json::from_value(r.get("extra_headers")).unwrap_or_default(),
        created_at: ts(r.get("created_at")),
        auth_header: r.get("auth_header"),
        secret_stored: r.get("secret_stored"),
    }
}

fn admin_sink(s: cfg::TelemetrySink, created: DateTime<Utc>) -> TelemetrySink {
    TelemetrySink {
        name: s.name,
        kind: s.kind,
        endpoint: s.endpoint,
        protocol: s.protocol,
        headers_from_env: s.headers_from_env,
        sample_ratio: s.sample_ratio,
        metrics: s.metrics,
        created_at: ts(created),
        capture_content: s.capture_content,
        legacy_attributes: s.legacy_attributes,
        new_root: s.new_root,
        options: s.options,
        secrets_from_env: s.secrets_from_env,
    }
}

fn parse_id(what: &str, s: &str) -> Result<Uuid, AdminError> {
    Uuid::parse_str(s).map_err(|_| AdminError::Invalid(format!("{what} {s:?} is not a UUID")))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_provider(
        &self,
        req: Request<CreateProviderRequest>,
    ) -> Result<Response<Provider>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let p = cfg::Provider {
            key: r.key,
            kind: r.kind,
            base_url: r.base_url.trim_end_matches('/').to_string(),
            api_key_env: r.api_key_env,
            extra_headers: r.extra_headers,
            auth_header: r.auth_header.to_ascii_lowercase(),
            api_key: r.api_key,
            price_multiplier_ppm: None,
        };
        validate::validate_provider(&p).map_err(AdminError::from)?;
        let id = Uuid::now_v7();
        let sealed = self.seal(id, &p.api_key)?;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let created: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO providers (id, key, kind, base_url, api_key_env, extra_headers, auth_header, secret_sealed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at",
        )
        .bind(id)
        .bind(&p.key)
        .bind(&p.kind)
        .bind(&p.base_url)
        .bind(&p.api_key_env)
        .bind(serde_json::to_value(&p.extra_headers).unwrap_or_default())
        .bind(&p.auth_header)
        .bind(&sealed)
        .fetch_one(&mut *tx)
        .await
        .map_err(unique(format!("provider {:?}", p.key)))?;
        bump(&mut tx, ResourceType::Providers)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(Provider {
            id: id.to_string(),
            key: p.key,
            kind: p.kind,
            base_url: p.base_url,
            api_key_env: p.api_key_env,
            extra_headers: p.extra_headers,
            created_at: ts(created),
            auth_header: p.auth_header,
            secret_stored: sealed.is_some(),
        }))
    }

    async fn create_telemetry_sink(
        &self,
        req: Request<TelemetrySink>,
    ) -> Result<Response<TelemetrySink>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let kind = if r.kind.is_empty() {
            "otlp".to_string()
        } else {
            r.kind
        };
        // Presets speak OTLP over HTTP; a plain sink defaults to gRPC.
        let protocol = match (r.protocol.is_empty(), kind.as_str()) {
            (false, _) => r.protocol,
            (true, "otlp") => "grpc".into(),
            (true, _) => "http/protobuf".into(),
        };
        let sink = cfg::TelemetrySink {
            name: r.name,
            kind,
            endpoint: r.endpoint.trim().to_string(),
            protocol,
            headers_from_env: r
                .headers_from_env
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            sample_ratio: if r.sample_ratio == 0.0 {
                1.0
            } else {
                r.sample_ratio
            },
            metrics: r.metrics,
            capture_content: r.capture_content,
            legacy_attributes: r.legacy_attributes,
            new_root: r.new_root,
            options: r.options,
            secrets_from_env: r.secrets_from_env,
        };
        validate::validate_telemetry_sink(&sink).map_err(AdminError::from)?;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let created: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO telemetry_sinks (name, kind, endpoint, protocol, headers_from_env, sample_ratio,
                 metrics, capture_content, legacy_attributes, new_root, options, secrets_from_env)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING created_at",
        )
        .bind(&sink.name)
        .bind(&sink.kind)
        .bind(&sink.endpoint)
        .bind(&sink.protocol)
        .bind(serde_json::to_value(&sink.headers_from_env).unwrap_or_default())
        .bind(sink.sample_ratio)
        .bind(sink.metrics)
        .bind(sink.capture_content)
        .bind(sink.legacy_attributes)
        .bind(sink.new_root)
        .bind(serde_json::to_value(&sink.options).unwrap_or_default())
        .bind(serde_json::to_value(&sink.secrets_from_env).unwrap_or_default())
        .fetch_one(&mut *tx)
        .await
        .map_err(unique(format!("telemetry sink {:?}", sink.name)))?;
        bump(&mut tx, ResourceType::TelemetrySinks)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(admin_sink(sink, created)))
    }

    async fn list_telemetry_sinks(
        &self,
        req: Request<ListTelemetrySinksRequest>,
    ) -> Result<Response<ListTelemetrySinksResponse>, Status> {
        self.admin(&req).await?;
        let rows = sqlx::query("SELECT * FROM telemetry_sinks ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(AdminError::from)?;
        let sinks = rows
            .iter()
            .map(|r| admin_sink(sink_from_row(r), r.get("created_at")))
            .collect();
        Ok(Response::new(ListTelemetrySinksResponse { sinks }))
    }

    async fn delete_telemetry_sink(
        &self,
        req: Request<DeleteTelemetrySinkRequest>,
    ) -> Result<Response<DeleteTelemetrySinkResponse>, Status> {
        self.admin(&req).await?;
        let name = req.into_inner().name;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let gone = sqlx::query("DELETE FROM telemetry_sinks WHERE name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(AdminError::from)?
            .rows_affected();
        if gone == 0 {
            return Err(AdminError::NotFound(format!("no telemetry sink {name:?}")).into());
        }
        bump(&mut tx, ResourceType::TelemetrySinks)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(DeleteTelemetrySinkResponse {}))
    }

    async fn set_provider_secret(
        &self,
        req: Request<SetProviderSecretRequest>,
    ) -> Result<Response<Provider>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let row = sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM providers WHERE key = $1 FOR UPDATE"
        ))
        .bind(&r.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(AdminError::from)?
        .ok_or_else(|| AdminError::NotFound(format!("no provider {:?}", r.key)))?;
        let mut p = provider_from_row(&row);
        // The same checks a create makes (one secret source, a usable header value).
        validate::validate_provider(&cfg::Provider {
            key: p.key.clone(),
            kind: p.kind.clone(),
            base_url: p.base_url.clone(),
            api_key_env: p.api_key_env.clone(),
            extra_headers: p.extra_headers.clone(),
            auth_header: p.auth_header.clone(),
            api_key: r.api_key.clone(),
            price_multiplier_ppm: None,
        })
        .map_err(AdminError::from)?;
        let id = parse_id("provider id", &p.id)?;
        let sealed = self.seal(id, &r.api_key)?;
        sqlx::query("UPDATE providers SET secret_sealed = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(&sealed)
            .execute(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        bump(&mut tx, ResourceType::Providers)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        p.secret_stored = sealed.is_some();
        Ok(Response::new(p))
    }

    async fn list_providers(
        &self,
        req: Request<ListProvidersRequest>,
    ) -> Result<Response<ListProvidersResponse>, Status> {
        self.admin(&req).await?;
        let rows = sqlx::query(&format!(
            "SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY key"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let providers = rows.iter().map(provider_from_row).collect();
        Ok(Response::new(ListProvidersResponse { providers }))
    }

    async fn create_model(
        &self,
        req: Request<CreateModelRequest>,
    ) -> Result<Response<Model>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let policy = r.policy.clone().unwrap_or_default();
        let route = cfg::Route {
            model_key: r.key.clone(),
            targets: r
                .targets
                .iter()
                .map(|t| cfg::Target {
                    provider_key: t.provider_key.clone(),
                    upstream_model: t.upstream_model.clone(),
                    weight: t.weight,
                })
                .collect(),
            operations: r.operations.clone(),
            policy: Some(cfg::RoutePolicy {
                max_attempts: policy.max_attempts,
                retry_on_status: policy.retry_on_status.clone(),
                backoff_ms: policy.backoff_ms,
                first_byte_timeout_ms: policy.first_byte_timeout_ms,
                total_timeout_ms: policy.total_timeout_ms,
                require_price: policy.require_price,
            }),
            fleet_groups: r.fleet_groups.clone(),
        };
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let providers: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, key FROM providers")
            .fetch_all(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        let provider_id = |k: &str| {
            providers
                .iter()
                .find(|(_, key)| key == k)
                .map(|(id, _)| *id)
        };
        validate::validate_route(&route, |k| provider_id(k).is_some()).map_err(AdminError::from)?;
        let id = Uuid::now_v7();
        let created: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO models (id, key, operations, route_policy, fleet_groups)
             VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
        )
        .bind(id)
        .bind(&route.model_key)
        .bind(&route.operations)
        .bind(policy_to_json(route.policy.as_ref().expect("set above")))
        .bind(&route.fleet_groups)
        .fetch_one(&mut *tx)
        .await
        .map_err(unique(format!("model {:?}", route.model_key)))?;
        for (pos, t) in route.targets.iter().enumerate() {
            sqlx::query(
                "INSERT INTO model_targets (model_id, position, provider_id, upstream_model, weight)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(pos as i32)
            .bind(provider_id(&t.provider_key))
            .bind(&t.upstream_model)
            .bind(t.weight.min(i32::MAX as u32) as i32)
            .execute(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        }
        bump(&mut tx, ResourceType::Routes)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(Model {
            id: id.to_string(),
            key: r.key,
            targets: r.targets,
            created_at: ts(created),
            price: None,
            operations: r.operations,
            policy: Some(policy),
            fleet_groups: r.fleet_groups,
        }))
    }

    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        self.admin(&req).await?;
        let rows = sqlx::query(
            "SELECT m.id, m.key, m.created_at, m.operations, m.route_policy, m.fleet_groups,
                    p.key AS provider_key, t.upstream_model, t.weight
             FROM models m
             JOIN model_targets t ON t.model_id = m.id
             JOIN providers p ON p.id = t.provider_id
             ORDER BY m.key, t.position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let mut models: Vec<Model> = Vec::new();
        for r in rows {
            let key: String = r.get("key");
            let target = Target {
                provider_key: r.get("provider_key"),
                upstream_model: r.get("upstream_model"),
                weight: r.get::<i32, _>("weight") as u32,
            };
            match models.last_mut() {
                Some(m) if m.key == key => m.targets.push(target),
                _ => {
                    let p = policy_from_json(&r.get::<serde_json::Value, _>("route_policy"));
                    models.push(Model {
                        id: r.get::<Uuid, _>("id").to_string(),
                        key,
                        targets: vec![target],
                        created_at: ts(r.get("created_at")),
                        price: None,
                        operations: r.get("operations"),
                        fleet_groups: r.get("fleet_groups"),
                        policy: Some(RoutePolicy {
                            max_attempts: p.max_attempts,
                            retry_on_status: p.retry_on_status,
                            backoff_ms: p.backoff_ms,
                            first_byte_timeout_ms: p.first_byte_timeout_ms,
                            total_timeout_ms: p.total_timeout_ms,
                            require_price: p.require_price,
                        }),
                    })
                }
            }
        }
        let keys: Vec<String> = models.iter().map(|m| m.key.clone()).collect();
        let prices = crate::prices::current(&self.pool, &keys)
            .await
            .map_err(AdminError::from)?;
        for m in &mut models {
            m.price = prices.iter().find(|p| p.model_key == m.key).cloned();
        }
        Ok(Response::new(ListModelsResponse { models }))
    }

    async fn set_price(&self, req: Request<SetPriceRequest>) -> Result<Response<Price>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let mut out = self.store_prices(std::slice::from_ref(&r)).await?;
        Ok(Response::new(out.remove(0)))
    }

    async fn set_price_multiplier(
        &self,
        req: Request<SetPriceMultiplierRequest>,
    ) -> Result<Response<PriceMultiplier>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let ppm = pricing::parse_multiplier(&r.multiplier)
            .map_err(|e| AdminError::Invalid(format!("multiplier: {e}")))?;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let out = match (r.provider.as_str(), r.api_key.as_str()) {
            (p, "") if !p.is_empty() => {
                let done =
                    sqlx::query("UPDATE providers SET price_multiplier_ppm = $2 WHERE key = $1")
                        .bind(p)
                        .bind(ppm as i32)
                        .execute(&mut *tx)
                        .await
                        .map_err(AdminError::from)?;
                if done.rows_affected() == 0 {
                    return Err(AdminError::NotFound(format!("provider {p:?} not found")).into());
                }
                bump(&mut tx, ResourceType::Providers)
                    .await
                    .map_err(AdminError::from)?;
                PriceMultiplier {
                    provider: p.to_string(),
                    api_key_id: String::new(),
                    multiplier: pricing::format_multiplier(ppm),
                }
            }
            ("", k) if !k.is_empty() => {
                lock_keys(&mut tx).await?;
                let id = find_key(&mut tx, k, false).await?;
                sqlx::query("UPDATE api_keys SET price_multiplier_ppm = $2 WHERE id = $1")
                    .bind(id)
                    .bind(ppm as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err(AdminError::from)?;
                bump(&mut tx, ResourceType::ApiKeys)
                    .await
                    .map_err(AdminError::from)?;
                PriceMultiplier {
                    provider: String::new(),
                    api_key_id: id.to_string(),
                    multiplier: pricing::format_multiplier(ppm),
                }
            }
            _ => {
                return Err(
                    AdminError::Invalid("give exactly one of provider and api_key".into()).into(),
                )
            }
        };
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(out))
    }

    async fn set_prices(
        &self,
        req: Request<SetPricesRequest>,
    ) -> Result<Response<SetPricesResponse>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        if r.prices.is_empty() {
            return Err(AdminError::Invalid("prices: give at least one price".into()).into());
        }
        let prices = self.store_prices(&r.prices).await?;
        Ok(Response::new(SetPricesResponse { prices }))
    }

    async fn create_user(&self, req: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        if r.name.trim().is_empty() || r.name.len() > 128 {
            return Err(AdminError::Invalid("user name must be 1-128 characters".into()).into());
        }
        let id = Uuid::now_v7();
        let enabled = r.request_logging_enabled.unwrap_or(true);
        let created: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO users (id, name, email, request_logging_enabled) VALUES ($1, $2, $3, $4)
             RETURNING created_at",
        )
        .bind(id)
        .bind(&r.name)
        .bind(&r.email)
        .bind(enabled)
        .fetch_one(&self.pool)
        .await
        .map_err(unique(format!("user {:?}", r.name)))?;
        Ok(Response::new(User {
            id: id.to_string(),
            name: r.name,
            email: r.email,
            request_logging_enabled: enabled,
            created_at: ts(created),
        }))
    }

    async fn list_users(
        &self,
        req: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        self.admin(&req).await?;
        let rows = sqlx::query(
            "SELECT id, name, email, request_logging_enabled, created_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let users = rows
            .into_iter()
            .map(|r| User {
                id: r.get::<Uuid, _>("id").to_string(),
                name: r.get("name"),
                email: r.get("email"),
                request_logging_enabled: r.get("request_logging_enabled"),
                created_at: ts(r.get("created_at")),
            })
            .collect();
        Ok(Response::new(ListUsersResponse { users }))
    }

    async fn create_admin_token(
        &self,
        req: Request<CreateAdminTokenRequest>,
    ) -> Result<Response<CreateAdminTokenResponse>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        if r.name.trim().is_empty() || r.name.len() > 128 {
            return Err(AdminError::Invalid("token name must be 1-128 characters".into()).into());
        }
        let team_id = match (r.role.as_str(), r.team.is_empty()) {
            ("platform_admin", true) => None,
            ("platform_admin", false) => {
                return Err(AdminError::Invalid(
                    "a platform_admin token sees every team; it takes no team".into(),
                )
                .into())
            }
            ("team_viewer", false) => Some(find_team(&self.pool, &r.team).await?.0),
            ("team_viewer", true) => {
                return Err(AdminError::Invalid("a team_viewer token needs a team".into()).into())
            }
            (other, _) => {
                return Err(AdminError::Invalid(format!(
                    "role {other:?} must be platform_admin or team_viewer"
                ))
                .into())
            }
        };
        let secret = new_admin_secret();
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, token_hash, role, team_id) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&r.name)
        .bind(&weir_proto::api_key::hash(&secret)[..])
        .bind(&r.role)
        .bind(team_id)
        .execute(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let token = self.admin_token(id).await?;
        Ok(Response::new(CreateAdminTokenResponse {
            token: Some(token),
            secret,
        }))
    }

    async fn list_admin_tokens(
        &self,
        req: Request<ListAdminTokensRequest>,
    ) -> Result<Response<ListAdminTokensResponse>, Status> {
        self.admin(&req).await?;
        let all = req.into_inner().include_revoked;
        let rows = sqlx::query(&format!(
            "{ADMIN_TOKEN_SELECT} WHERE $1 OR a.revoked_at IS NULL ORDER BY a.created_at"
        ))
        .bind(all)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        Ok(Response::new(ListAdminTokensResponse {
            tokens: rows.iter().map(admin_token_from_row).collect(),
        }))
    }

    async fn revoke_admin_token(
        &self,
        req: Request<RevokeAdminTokenRequest>,
    ) -> Result<Response<AdminToken>, Status> {
        self.admin(&req).await?;
        let id = parse_id("token id", &req.into_inner().id)?;
        let n = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(AdminError::from)?
        .rows_affected();
        if n == 0 {
            return Err(AdminError::NotFound(format!("no admin token {id}")).into());
        }
        Ok(Response::new(self.admin_token(id).await?))
    }

    async fn create_team(&self, req: Request<CreateTeamRequest>) -> Result<Response<Team>, Status> {
        self.admin(&req).await?;
        let name = req.into_inner().name;
        validate::validate_key("team", &name).map_err(AdminError::from)?;
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO teams (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(&name)
            .execute(&self.pool)
            .await
            .map_err(unique(format!("team {name:?}")))?;
        Ok(Response::new(team_view(&self.pool, id).await?))
    }

    async fn list_teams(
        &self,
        req: Request<ListTeamsRequest>,
    ) -> Result<Response<ListTeamsResponse>, Status> {
        self.admin(&req).await?;
        let rows = sqlx::query(&format!("{TEAM_SELECT} GROUP BY t.id ORDER BY t.name"))
            .fetch_all(&self.pool)
            .await
            .map_err(AdminError::from)?;
        Ok(Response::new(ListTeamsResponse {
            teams: rows.iter().map(team_from_row).collect(),
        }))
    }

    async fn add_team_member(
        &self,
        req: Request<TeamMemberRequest>,
    ) -> Result<Response<Team>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let (team_id, _) = find_team(&self.pool, &r.team).await?;
        let (user_id, _) = find_user(&self.pool, &r.user).await?;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        lock_keys(&mut tx).await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        // The user's keys without a team are attributed to this one from now on.
        let moved = sqlx::query(
            "UPDATE api_keys SET team_id = $1 WHERE owner_user_id = $2 AND team_id IS NULL",
        )
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(AdminError::from)?
        .rows_affected();
        if moved > 0 {
            bump(&mut tx, ResourceType::ApiKeys)
                .await
                .map_err(AdminError::from)?;
        }
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(team_view(&self.pool, team_id).await?))
    }

    async fn remove_team_member(
        &self,
        req: Request<TeamMemberRequest>,
    ) -> Result<Response<Team>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let (team_id, team_name) = find_team(&self.pool, &r.team).await?;
        let (user_id, user_name) = find_user(&self.pool, &r.user).await?;
        let gone = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(AdminError::from)?
            .rows_affected();
        if gone == 0 {
            return Err(AdminError::NotFound(format!(
                "{user_name:?} is not a member of team {team_name:?}"
            ))
            .into());
        }
        Ok(Response::new(team_view(&self.pool, team_id).await?))
    }

    async fn create_service_account(
        &self,
        req: Request<CreateServiceAccountRequest>,
    ) -> Result<Response<ServiceAccount>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        validate::validate_key("service account", &r.name).map_err(AdminError::from)?;
        if r.name.contains('/') {
            return Err(AdminError::Invalid(format!(
                "service account name {:?} must not contain '/' (keys name it as team/name)",
                r.name
            ))
            .into());
        }
        let (team_id, _) = find_team(&self.pool, &r.team).await?;
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO service_accounts (id, name, team_id) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(&r.name)
            .bind(team_id)
            .execute(&self.pool)
            .await
            .map_err(unique(format!("service account {:?} in that team", r.name)))?;
        let row = sqlx::query(
            "SELECT sa.id, sa.name, sa.team_id, t.name AS team_name, sa.created_at
             FROM service_accounts sa JOIN teams t ON t.id = sa.team_id WHERE sa.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(AdminError::from)?;
        Ok(Response::new(service_account_from_row(&row)))
    }

    async fn list_service_accounts(
        &self,
        req: Request<ListServiceAccountsRequest>,
    ) -> Result<Response<ListServiceAccountsResponse>, Status> {
        self.admin(&req).await?;
        let team = req.into_inner().team;
        let team_id = if team.is_empty() {
            None
        } else {
            Some(find_team(&self.pool, &team).await?.0)
        };
        let rows = sqlx::query(
            "SELECT sa.id, sa.name, sa.team_id, t.name AS team_name, sa.created_at
             FROM service_accounts sa JOIN teams t ON t.id = sa.team_id
             WHERE $1::uuid IS NULL OR sa.team_id = $1 ORDER BY t.name, sa.name",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        Ok(Response::new(ListServiceAccountsResponse {
            service_accounts: rows.iter().map(service_account_from_row).collect(),
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        if r.name.trim().is_empty() {
            return Err(AdminError::Invalid("key name must not be empty".into()).into());
        }
        let expires_at = if r.expires_at.is_empty() {
            None
        } else {
            Some(
                DateTime::parse_from_rfc3339(&r.expires_at)
                    .map_err(|e| {
                        AdminError::Invalid(format!(
                            "expires_at {:?} is not RFC 3339: {e}",
                            r.expires_at
                        ))
                    })?
                    .with_timezone(&Utc),
            )
        };
        for m in &r.allowed_models {
            validate::validate_key("model", m).map_err(AdminError::from)?;
        }
        for g in &r.fleet_groups {
            validate::validate_group(g).map_err(AdminError::from)?;
        }
        // The owner: a user (attributed to themselves, in their first team), or a service
        // account (in its team, attributed to an optional user).
        let owner = match (r.owner_user.is_empty(), r.owner_service_account.is_empty()) {
            (false, true) => {
                let (user_id, user_name) = find_user(&self.pool, &r.owner_user).await?;
                let team_id: Option<Uuid> = sqlx::query_scalar(
                    "SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id LIMIT 1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(AdminError::from)?;
                KeyOwner {
                    user: Some((user_id, user_name)),
                    service_account: None,
                    attributed_user: Some(user_id),
                    team_id,
                }
            }
            (true, false) => {
                let (sa_id, sa_name, team_id) =
                    self.find_service_account(&r.owner_service_account).await?;
                let attributed_user = if r.user.is_empty() {
                    None
                } else {
                    Some(find_user(&self.pool, &r.user).await?.0)
                };
                KeyOwner {
                    user: None,
                    service_account: Some((sa_id, sa_name)),
                    attributed_user,
                    team_id: Some(team_id),
                }
            }
            _ => {
                return Err(AdminError::Invalid(
                    "a key needs exactly one owner: owner_user or owner_service_account".into(),
                )
                .into())
            }
        };
        if owner.user.is_some() && !r.user.is_empty() {
            return Err(AdminError::Invalid(
                "user attribution is for service-account keys; a user's key is attributed to its owner".into(),
            )
            .into());
        }
        let minted = weir_proto::api_key::mint();
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        lock_keys(&mut tx).await?;
        let created: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_keys (id, name, key_hash, display_prefix, owner_user_id, user_id,
                                   team_id, allowed_models, expires_at, fleet_groups,
                                   owner_service_account_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING created_at",
        )
        .bind(id)
        .bind(&r.name)
        .bind(&minted.hash[..])
        .bind(&minted.display_prefix)
        .bind(owner.user.as_ref().map(|u| u.0))
        .bind(owner.attributed_user)
        .bind(owner.team_id)
        .bind(&r.allowed_models)
        .bind(expires_at)
        .bind(&r.fleet_groups)
        .bind(owner.service_account.as_ref().map(|s| s.0))
        .fetch_one(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        bump(&mut tx, ResourceType::ApiKeys)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(CreateApiKeyResponse {
            key: Some(ApiKey {
                id: id.to_string(),
                name: r.name,
                display_prefix: minted.display_prefix,
                owner_user_id: owner
                    .user
                    .as_ref()
                    .map(|u| u.0.to_string())
                    .unwrap_or_default(),
                owner_user_name: owner.user.as_ref().map(|u| u.1.clone()).unwrap_or_default(),
                user_id: owner
                    .attributed_user
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                owner_service_account_id: owner
                    .service_account
                    .as_ref()
                    .map(|s| s.0.to_string())
                    .unwrap_or_default(),
                owner_service_account_name: owner
                    .service_account
                    .as_ref()
                    .map(|s| s.1.clone())
                    .unwrap_or_default(),
                team_id: owner.team_id.map(|t| t.to_string()).unwrap_or_default(),
                allowed_models: r.allowed_models,
                expires_at: opt_ts(expires_at),
                revoked_at: String::new(),
                created_at: ts(created),
                fleet_groups: r.fleet_groups,
            }),
            secret: minted.secret,
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        self.admin(&req).await?;
        let include_revoked = req.get_ref().include_revoked;
        let rows = sqlx::query(&format!(
            "{KEY_SELECT} WHERE $1 OR k.revoked_at IS NULL ORDER BY k.created_at"
        ))
        .bind(include_revoked)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        Ok(Response::new(ListApiKeysResponse {
            keys: rows.iter().map(key_from_row).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        self.admin(&req).await?;
        let wanted = req.into_inner().key;
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        lock_keys(&mut tx).await?;
        // Revoking an already revoked key is a no-op, not a not-found.
        let id = find_key(&mut tx, &wanted, true).await?;
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        bump(&mut tx, ResourceType::ApiKeys)
            .await
            .map_err(AdminError::from)?;
        let row = sqlx::query(&format!("{KEY_SELECT} WHERE k.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(key_from_row(&row)))
    }

    async fn list_dataplanes(
        &self,
        req: Request<ListDataplanesRequest>,
    ) -> Result<Response<ListDataplanesResponse>, Status> {
        self.admin(&req).await?;
        Ok(Response::new(ListDataplanesResponse {
            dataplanes: read_dataplanes(&self.pool, None).await?,
        }))
    }

    async fn get_dataplane(
        &self,
        req: Request<GetDataplaneRequest>,
    ) -> Result<Response<Dataplane>, Status> {
        self.admin(&req).await?;
        let id = req.into_inner().node_id;
        let found = read_dataplanes(&self.pool, Some(&id)).await?;
        let dp = found
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::NotFound(format!("data plane {id:?} not found")))?;
        Ok(Response::new(dp))
    }

    async fn set_limits(&self, req: Request<SetLimitsRequest>) -> Result<Response<Limits>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let (kind, reference) = r.subject.split_once(':').ok_or_else(|| {
            AdminError::Invalid(format!(
                "subject {:?} must be key:<id or prefix>, user:<id or name> or team:<id or name>",
                r.subject
            ))
        })?;
        let period = if r.budget_period.is_empty() {
            "month".to_string()
        } else {
            r.budget_period.clone()
        };
        if !["day", "month", "total"].contains(&period.as_str()) {
            return Err(AdminError::Invalid(format!(
                "budget_period {period:?} must be day, month or total"
            ))
            .into());
        }
        let budget = if r.budget_usd.is_empty() {
            None
        } else {
            Some(
                pricing::parse_usd(&r.budget_usd)
                    .map_err(|e| AdminError::Invalid(format!("budget_usd: {e}")))?,
            )
        };
        let (table, lookup) = match kind {
            "key" => ("api_keys", "id::text = $1 OR display_prefix = $1"),
            "user" => ("users", "id::text = $1 OR name = $1"),
            "team" => ("teams", "id::text = $1 OR name = $1"),
            other => {
                return Err(AdminError::Invalid(format!(
                    "subject kind {other:?} must be key, user or team"
                ))
                .into())
            }
        };
        let stored = StoredLimits {
            requests_per_minute: r.requests_per_minute,
            tokens_per_minute: r.tokens_per_minute,
            budget_pusd: budget,
            budget_period: period,
        };
        let json =
            if stored.requests_per_minute == 0 && stored.tokens_per_minute == 0 && budget.is_none()
            {
                serde_json::json!({})
            } else {
                serde_json::to_value(&stored).unwrap_or_default()
            };
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
            "UPDATE {table} SET limits = $2 WHERE id IN (SELECT id FROM {table} WHERE {lookup}) RETURNING id"
        ))
        .bind(reference)
        .bind(&json)
        .fetch_all(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        match ids.len() {
            0 => {
                return Err(AdminError::NotFound(format!("{kind} {reference:?} not found")).into())
            }
            1 => {}
            n => {
                return Err(AdminError::Invalid(format!(
                    "{n} {kind}s match {reference:?}; use the id"
                ))
                .into())
            }
        }
        bump(&mut tx, ResourceType::Limits)
            .await
            .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        let all = list_limits(&self.pool).await?;
        let subject = format!("{kind}:{}", ids[0]);
        let found = all
            .into_iter()
            .find(|l| l.subject == subject)
            .unwrap_or(Limits {
                subject,
                ..Default::default()
            });
        Ok(Response::new(found))
    }

    async fn list_limits(
        &self,
        req: Request<ListLimitsRequest>,
    ) -> Result<Response<ListLimitsResponse>, Status> {
        self.admin(&req).await?;
        Ok(Response::new(ListLimitsResponse {
            limits: list_limits(&self.pool).await?,
        }))
    }

    async fn get_payload_policy(
        &self,
        req: Request<GetPayloadPolicyRequest>,
    ) -> Result<Response<PayloadPolicy>, Status> {
        self.admin(&req).await?;
        let group = req.into_inner().fleet_group;
        let mut conn = self.pool.acquire().await.map_err(AdminError::from)?;
        Ok(Response::new(read_policy(&mut conn, &group).await?))
    }

    async fn set_payload_policy(
        &self,
        req: Request<SetPayloadPolicyRequest>,
    ) -> Result<Response<PayloadPolicy>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let group = r.fleet_group.clone();
        if !group.is_empty() {
            validate::validate_group(&group).map_err(AdminError::from)?;
        }
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        // A group's first policy starts as a copy of the default.
        sqlx::query(
            "INSERT INTO payload_policies (fleet_group, capture_mode, request_max_bytes,
                 response_max_bytes, stream_max_events, redaction_paths)
             SELECT $1, capture_mode, request_max_bytes, response_max_bytes, stream_max_events,
                    redaction_paths
             FROM payload_policies WHERE fleet_group = ''
             ON CONFLICT (fleet_group) DO NOTHING",
        )
        .bind(&group)
        .execute(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        sqlx::query("SELECT 1 FROM payload_policies WHERE fleet_group = $1 FOR UPDATE")
            .bind(&group)
            .execute(&mut *tx)
            .await
            .map_err(AdminError::from)?;
        let current = read_policy(&mut tx, &group).await?;
        let next = cfg::PayloadPolicy {
            capture_mode: r.capture_mode.unwrap_or(current.capture_mode),
            request_max_bytes: r.request_max_bytes.unwrap_or(current.request_max_bytes),
            response_max_bytes: r.response_max_bytes.unwrap_or(current.response_max_bytes),
            stream_max_events: r.stream_max_events.unwrap_or(current.stream_max_events),
            redaction_paths: if r.replace_redaction_paths {
                r.redaction_paths
            } else {
                current.redaction_paths
            },
        };
        // The same check every data plane runs: a bad policy is never pushed.
        validate::validate_payload_policy(&next).map_err(AdminError::from)?;
        let caps = [
            next.request_max_bytes,
            next.response_max_bytes,
            next.stream_max_events,
        ];
        if caps.iter().any(|c| *c > i32::MAX as u32) {
            return Err(AdminError::Invalid("caps must be below 2^31".into()).into());
        }
        sqlx::query(
            "UPDATE payload_policies SET capture_mode = $1, request_max_bytes = $2,
                    response_max_bytes = $3, stream_max_events = $4, redaction_paths = $5,
                    updated_at = now()
             WHERE fleet_group = $6",
        )
        .bind(&next.capture_mode)
        .bind(next.request_max_bytes as i32)
        .bind(next.response_max_bytes as i32)
        .bind(next.stream_max_events as i32)
        .bind(&next.redaction_paths)
        .bind(&group)
        .execute(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        bump(&mut tx, ResourceType::PayloadPolicy)
            .await
            .map_err(AdminError::from)?;
        let saved = read_policy(&mut tx, &group).await?;
        tx.commit().await.map_err(AdminError::from)?;
        Ok(Response::new(saved))
    }

    async fn list_request_logs(
        &self,
        req: Request<ListRequestLogsRequest>,
    ) -> Result<Response<ListRequestLogsResponse>, Status> {
        let team = self.team_scope(&req).await?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 50,
            n @ 1..=1000 => n as i64,
            n => {
                return Err(
                    AdminError::Invalid(format!("limit {n} is out of range 1..=1000")).into(),
                )
            }
        };
        let cursor = if r.cursor.is_empty() {
            None
        } else {
            Some(decode_cursor(&r.cursor)?)
        };
        let user_id = if r.user_id.is_empty() {
            None
        } else {
            Some(parse_id("user_id", &r.user_id)?)
        };
        // A team viewer's own team is always applied ($5); this is the admin's optional filter.
        let team_filter = if r.team_id.is_empty() {
            None
        } else {
            Some(parse_id("team_id", &r.team_id)?)
        };
        let (since, until) = (
            optional_time("since", &r.since)?,
            optional_time("until", &r.until)?,
        );
        // With a tag filter, walk the tag index newest first and join each hit to its log, so a
        // rare tag costs its own rows rather than a scan of the logs checking each one's tags.
        let (from, tag_filter, order) = if r.tag_key.is_empty() {
            ("request_logs l", "", "l.log_id")
        } else {
            (
                "request_log_tags t JOIN request_logs l
                   ON l.log_id = t.log_id AND l.created_at = t.created_at",
                "AND t.key = $12 AND ($13::text IS NULL OR t.value = $13)
                 AND ($6::timestamptz IS NULL OR (t.created_at <= $6 AND t.log_id < $7))
                 AND ($18::timestamptz IS NULL OR t.created_at >= $18)
                 AND ($19::timestamptz IS NULL OR t.created_at < $19)",
                "t.log_id",
            )
        };
        let mut tx = self.pool.begin().await.map_err(AdminError::from)?;
        if !r.tag_key.is_empty() {
            // Parallel workers would gather every matching tag and sort them; one ordered merge
            // of the partitions' tag indexes stops at the page's last row instead.
            sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
                .execute(&mut *tx)
                .await
                .map_err(AdminError::from)?;
        }
        let request_id_1 = request_id_is("l", "$1");
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM {from}
             WHERE ($1::text IS NULL OR {request_id_1} OR l.log_id = $21)
               AND ($2::text IS NULL OR l.model_key = $2)
               AND ($3::uuid IS NULL OR l.user_id = $3)
               AND ($4::int IS NULL OR l.status_code = $4)
               AND ($5::uuid IS NULL OR l.team_id = $5)
               AND ($6::timestamptz IS NULL OR (l.created_at <= $6 AND l.log_id < $7))
               AND ($9::text IS NULL OR l.service = $9)
               AND ($10::text IS NULL OR l.component = $10)
               AND ($11::text IS NULL OR l.env = $11)
               AND ($14::text IS NULL OR l.provider_key = $14)
               AND ($15::uuid IS NULL OR l.team_id = $15)
               AND ($16::text IS NULL OR l.harness_key = $16)
               AND ($17::text IS NULL OR l.operation = $17)
               AND ($18::timestamptz IS NULL OR l.created_at >= $18)
               AND ($19::timestamptz IS NULL OR l.created_at < $19)
               AND ($20::text IS NULL OR l.feedback->'labels' ? $20)
               -- Typed here for when the tag join is absent: every bound parameter must appear.
               AND ($12::text IS NULL OR $12 IS NOT NULL) AND ($13::text IS NULL OR $13 IS NOT NULL)
               {tag_filter}
             ORDER BY {order} DESC
             LIMIT $8"
        ))
        .bind((!r.request_id.is_empty()).then_some(&r.request_id))
        .bind((!r.model_key.is_empty()).then_some(&r.model_key))
        .bind(user_id)
        .bind((r.status_code != 0).then_some(r.status_code as i32))
        .bind(team)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(limit + 1)
        .bind(nonempty(&r.service))
        .bind(nonempty(&r.component))
        .bind(nonempty(&r.env))
        .bind(nonempty(&r.tag_key))
        .bind(nonempty(&r.tag_value))
        .bind(nonempty(&r.provider_key))
        .bind(team_filter)
        .bind(nonempty(&r.harness))
        .bind(nonempty(&r.operation))
        .bind(since)
        .bind(until)
        .bind(nonempty(&r.feedback_label))
        .bind(Uuid::parse_str(&r.request_id).ok())
        .fetch_all(&mut *tx)
        .await
        .map_err(AdminError::from)?;
        tx.commit().await.map_err(AdminError::from)?;
        let more = rows.len() as i64 > limit;
        let logs: Vec<RequestLogSummary> = rows
            .iter()
            .take(limit as usize)
            .map(summary_from_row)
            .collect();
        let next_cursor = if more {
            let last = &rows[limit as usize - 1];
            encode_cursor(last.get("created_at"), last.get("log_id"))
        } else {
            String::new()
        };
        Ok(Response::new(ListRequestLogsResponse { logs, next_cursor }))
    }

    async fn get_request_log(
        &self,
        req: Request<GetRequestLogRequest>,
    ) -> Result<Response<RequestLogDetail>, Status> {
        let team = self.team_scope(&req).await?;
        let wanted = req.into_inner().id;
        if wanted.is_empty() {
            return Err(AdminError::Invalid("id must not be empty".into()).into());
        }
        let by_log_id = Uuid::parse_str(&wanted).ok();
        let request_id_2 = request_id_is("l", "$2");
        let same_count = same_request_id_count();
        let row = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS}, l.error_message, l.upstream_model, l.ttfb_us,
                    l.cached_input_tokens, l.reasoning_tokens, l.node_id, l.fleet_group, l.user_agent,
                    l.request_payload_truncated, l.response_payload_truncated, {POLICY_DOC} AS policy,
                    l.harness_label, l.harness_version, l.session_id, l.session_source,
                    l.turn_kind, l.exposed_tool_count, l.invoked_tool_count, l.feedback,
                    {same_count} AS same_count
             FROM request_logs l
             WHERE (l.log_id = $1 OR ($1 IS NULL AND {request_id_2}))
               AND ($3::uuid IS NULL OR l.team_id = $3)
             ORDER BY l.log_id DESC
             LIMIT 1"
        ))
        .bind(by_log_id)
        .bind(&wanted)
        .bind(team)
        .fetch_optional(&self.pool)
        .await
        .map_err(AdminError::from)?;
        // A team viewer asking for another team's log gets the same answer as for a missing one.
        let row =
            row.ok_or_else(|| AdminError::NotFound(format!("request log {wanted:?} not found")))?;
        let log_id: Uuid = row.get("log_id");
        let created_at: DateTime<Utc> = row.get("created_at");
        let payload = sqlx::query(
            "SELECT request::text AS request, response::text AS response
             FROM request_log_payloads WHERE log_id = $1 AND created_at = $2",
        )
        .bind(log_id)
        .bind(created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let tags = sqlx::query(
            "SELECT key, value FROM request_log_tags WHERE log_id = $1 AND created_at = $2 ORDER BY key",
        )
        .bind(log_id)
        .bind(created_at)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let attempts = sqlx::query(
            "SELECT attempt_no, provider_key, upstream_model, status_code, error_kind,
                    error_message, duration_us, produced_response
             FROM request_log_attempts_all WHERE log_id = $1 AND created_at = $2
             ORDER BY attempt_no",
        )
        .bind(log_id)
        .bind(created_at)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let u64_col = |name: &str| row.get::<Option<i64>, _>(name).map(|v| v.max(0) as u64);
        let detail = RequestLogDetail {
            summary: Some(summary_from_row(&row)),
            error_message: row.get("error_message"),
            upstream_model: row.get("upstream_model"),
            ttfb_ms: u64_col("ttfb_us").map(|us| us / 1000),
            cached_input_tokens: u64_col("cached_input_tokens"),
            reasoning_tokens: u64_col("reasoning_tokens"),
            node_id: row.get("node_id"),
            fleet_group: row.get("fleet_group"),
            user_agent: row.get("user_agent"),
            tags: tags
                .iter()
                .map(|t| Tag {
                    key: t.get("key"),
                    value: t.get("value"),
                })
                .collect(),
            attempts: attempts
                .iter()
                .map(|a| Attempt {
                    number: a.get::<i16, _>("attempt_no") as u32,
                    provider_key: a.get("provider_key"),
                    upstream_model: a.get("upstream_model"),
                    status_code: a.get::<i32, _>("status_code") as u32,
                    error_kind: a.get("error_kind"),
                    error_message: a.get("error_message"),
                    duration_ms: (a.get::<i64, _>("duration_us").max(0) as u64) / 1000,
                    produced_response: a.get("produced_response"),
                })
                .collect(),
            request_payload: payload
                .as_ref()
                .and_then(|p| p.get::<Option<String>, _>("request"))
                .unwrap_or_default(),
            response_payload: payload
                .as_ref()
                .and_then(|p| p.get::<Option<String>, _>("response"))
                .unwrap_or_default(),
            request_payload_truncated: row.get("request_payload_truncated"),
            response_payload_truncated: row.get("response_payload_truncated"),
            policy: row.get::<serde_json::Value, _>("policy").to_string(),
            same_request_id_count: row.get::<i64, _>("same_count") as u32,
            harness_label: row.get("harness_label"),
            harness_version: row.get("harness_version"),
            session_id: row
                .get::<Option<String>, _>("session_id")
                .unwrap_or_default(),
            session_source: row
                .get::<Option<String>, _>("session_source")
                .unwrap_or_default(),
            turn_kind: row
                .get::<Option<String>, _>("turn_kind")
                .unwrap_or_default(),
            exposed_tool_count: row
                .get::<Option<i32>, _>("exposed_tool_count")
                .map(|n| n.max(0) as u32),
            invoked_tool_count: row
                .get::<Option<i32>, _>("invoked_tool_count")
                .map(|n| n.max(0) as u32),
            feedback: row
                .get::<Option<serde_json::Value>, _>("feedback")
                .map(|f| feedback_from_json(&f)),
        };
        Ok(Response::new(detail))
    }

    async fn reconcile_spend(
        &self,
        req: Request<ReconcileSpendRequest>,
    ) -> Result<Response<ReconcileSpendResponse>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(self.reconcile_spend_inner(r).await?))
    }

    async fn list_unpriced(
        &self,
        req: Request<ListUnpricedRequest>,
    ) -> Result<Response<ListUnpricedResponse>, Status> {
        let team = self.team_scope(&req).await?;
        let r = req.into_inner();
        let until = optional_time("until", &r.until)?.unwrap_or_else(Utc::now);
        let since = optional_time("since", &r.since)?.unwrap_or(until - chrono::Duration::days(30));
        if since >= until {
            return Err(AdminError::Invalid("since must be before until".into()).into());
        }
        let rows = sqlx::query(
            "SELECT e.model_key, e.provider_key, e.upstream_model, count(*) AS requests,
                    coalesce(sum(e.input_tokens), 0)::bigint AS input_tokens,
                    coalesce(sum(e.output_tokens), 0)::bigint AS output_tokens,
                    min(e.created_at) AS first_seen, max(e.created_at) AS last_seen,
                    array_remove(array_agg(DISTINCT e.usage_extra->>'service_tier'), NULL)
                        AS tiers,
                    EXISTS (SELECT 1 FROM prices p WHERE p.model_key = e.model_key
                            AND p.valid_from <= now()) AS has_price
             FROM usage_cost_events e
             WHERE e.pricing_status = 'unpriced' AND e.created_at >= $1 AND e.created_at < $2
               AND ($3::uuid IS NULL OR e.team_id = $3)
             GROUP BY 1, 2, 3
             ORDER BY requests DESC, 1, 2, 3
             LIMIT 1000",
        )
        .bind(since)
        .bind(until)
        .bind(team)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let models = rows
            .iter()
            .map(|r| UnpricedModel {
                model_key: r.get("model_key"),
                provider_key: r.get("provider_key"),
                upstream_model: r.get("upstream_model"),
                requests: r.get::<i64, _>("requests") as u64,
                input_tokens: r.get::<i64, _>("input_tokens") as u64,
                output_tokens: r.get::<i64, _>("output_tokens") as u64,
                first_seen: ts(r.get("first_seen")),
                last_seen: ts(r.get("last_seen")),
                has_price: r.get("has_price"),
                service_tiers: r.get("tiers"),
            })
            .collect();
        Ok(Response::new(ListUnpricedResponse {
            models,
            since: ts(since),
            until: ts(until),
        }))
    }

    async fn get_spend(
        &self,
        req: Request<GetSpendRequest>,
    ) -> Result<Response<GetSpendResponse>, Status> {
        let team = self.team_scope(&req).await?;
        let r = req.into_inner();
        // Grouping column and the name looked up per group (not per row) from the group's `id`;
        // only these fixed fragments enter the SQL.
        let (key, name) = match r.group_by.as_str() {
            "user" => ("e.user_id", "(SELECT name FROM users WHERE id = g.id)"),
            "team" => ("e.team_id", "(SELECT name FROM teams WHERE id = g.id)"),
            "service_account" => (
                "e.service_account_id",
                "(SELECT t.name || '/' || sa.name FROM service_accounts sa JOIN teams t ON t.id = sa.team_id WHERE sa.id = g.id)",
            ),
            "model" => ("e.model_key", "NULL::text"),
            "provider" => ("e.provider_key", "NULL::text"),
            other => {
                return Err(AdminError::Invalid(format!(
                    "group_by {other:?} must be user, team, service_account, model or provider"
                ))
                .into())
            }
        };
        let until = optional_time("until", &r.until)?.unwrap_or_else(Utc::now);
        let since = optional_time("since", &r.since)?.unwrap_or(until - chrono::Duration::days(30));
        if since >= until {
            return Err(AdminError::Invalid("since must be before until".into()).into());
        }
        let rows = sqlx::query(&format!(
            "SELECT g.id::text AS key, {name} AS name, g.* FROM (
                 SELECT {key} AS id,
                        coalesce(sum(e.cost_pusd), 0)::bigint AS cost,
                        count(*) AS requests,
                        count(*) FILTER (WHERE e.pricing_status = 'priced') AS priced,
                        count(*) FILTER (WHERE e.pricing_status = 'unpriced') AS unpriced,
                        count(*) FILTER (WHERE e.pricing_status = 'usage_missing') AS usage_missing,
                        count(*) FILTER (WHERE e.pricing_status = 'estimated') AS estimated,
                        coalesce(sum(e.input_tokens), 0)::bigint AS input_tokens,
                        coalesce(sum(e.output_tokens), 0)::bigint AS output_tokens
                 FROM usage_cost_events e
                 WHERE e.created_at >= $1 AND e.created_at < $2
                   AND ($3::uuid IS NULL OR e.team_id = $3)
                 GROUP BY 1
             ) g
             ORDER BY g.cost DESC, g.requests DESC, g.id NULLS LAST"
        ))
        .bind(since)
        .bind(until)
        .bind(team)
        .fetch_all(&self.pool)
        .await
        .map_err(AdminError::from)?;
        let mut total = SpendRow::default();
        let rows: Vec<SpendRow> = rows
            .iter()
            .map(|row| {
                let n = |c: &str| row.get::<i64, _>(c).max(0) as u64;
                let cost: i64 = row.get("cost");
                let out = SpendRow {
                    key: row.get::<Option<String>, _>("key").unwrap_or_default(),
                    name: row.get::<Option<String>, _>("name").unwrap_or_default(),
                    cost_usd: pricing::format_usd(cost),
                    cost_pusd: cost,
                    requests: n("requests"),
                    priced: n("priced"),
                    unpriced: n("unpriced"),
                    usage_missing: n("usage_missing"),
                    estimated: n("estimated"),
                    input_tokens: n("input_tokens"),
                    output_tokens: n("output_tokens"),
                };
                total.cost_pusd += out.cost_pusd;
                total.requests += out.requests;
                total.priced += out.priced;
                total.unpriced += out.unpriced;
                total.usage_missing += out.usage_missing;
                total.estimated += out.estimated;
                total.input_tokens += out.input_tokens;
                total.output_tokens += out.output_tokens;
                out
            })
            .collect();
        total.cost_usd = pricing::format_usd(total.cost_pusd);
        total.name = "total".into();
        Ok(Response::new(GetSpendResponse {
            rows,
            total: Some(total),
            since: ts(since),
            until: ts(until),
        }))
    }

    async fn purge_request_logs(
        &self,
        req: Request<PurgeRequestLogsRequest>,
    ) -> Result<Response<PurgeRun>, Status> {
        self.admin(&req).await?;
        let r = req.into_inner();
        let retention = if r.retention.is_empty() {
            None
        } else {
            Some(r.retention.parse().map_err(AdminError::Invalid)?)
        };
        let id = self
            .purger
            .run_manual(retention, r.dry_run)
            .await
            .map_err(AdminError::from)?;
        let mut runs = read_purge_runs(&self.pool, Some(id), 1).await?;
        let run = runs
            .pop()
            .ok_or_else(|| AdminError::NotFound(format!("purge run {id}")))?;
        if !run.error.is_empty() {
            return Err(AdminError::Precondition(format!("purge failed: {}", run.error)).into());
        }
        Ok(Response::new(run))
    }

    async fn list_purge_runs(
        &self,
        req: Request<ListPurgeRunsRequest>,
    ) -> Result<Response<ListPurgeRunsResponse>, Status> {
        self.admin(&req).await?;
        let limit = match req.get_ref().limit {
            0 => 50,
            n @ 1..=1000 => i64::from(n),
            n => return Err(AdminError::Invalid(format!("limit must be 1..1000, not {n}")).into()),
        };
        Ok(Response::new(ListPurgeRunsResponse {
            runs: read_purge_runs(&self.pool, None, limit).await?,
        }))
    }

    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let viewer_team = self.team_scope(&req).await?;
        let r = req.into_inner();
        let id = |what: &str, v: &str| -> Result<Option<Uuid>, AdminError> {
            if v.is_empty() {
                Ok(None)
            } else {
                parse_id(what, v).map(Some)
            }
        };
        let until = optional_time("until", &r.until)?.unwrap_or_else(Utc::now);
        let since = optional_time("since", &r.since)?.unwrap_or(until - chrono::Duration::days(31));
        if since >= until {
            return Err(AdminError::Invalid("since must be before until".into()).into());
        }
        let limit = match r.limit {
            0 => 50,
            n @ 1..=500 => i64::from(n),
            n => return Err(AdminError::Invalid(format!("limit must be 1..500, not {n}")).into()),
        };
        let filter = sessions::Filter {
            since,
            until,
            user: id("user_id", &r.user_id)?,
            service_account: id("service_account_id", &r.service_account_id)?,
            viewer_team,
            team: id("team_id", &r.team_id)?,
            harness: nonempty(&r.harness).map(str::to_string),
            model: nonempty(&r.model_key).map(str::to_string),
            has_errors: r.has_errors,
            min_cost_pusd: if r.min_cost_usd.is_empty() {
                None
            } else {
                Some(pricing::parse_usd(&r.min_cost_usd).map_err(|e| {
                    AdminError::Invalid(format!("min_cost_usd {:?}: {e}", r.min_cost_usd))
                })?)
            },
            sort: sessions::Sort::parse(&r.sort).map_err(AdminError::Invalid)?,
            limit,
            cursor: if r.cursor.is_empty() {
                None
            } else {
                Some(sessions::Cursor::decode(&r.cursor).map_err(AdminError::Invalid)?)
            },
        };
        let (sessions, next_cursor) = sessions::list(&self.pool, &filter)
            .await
            .map_err(AdminError::from)?;
        Ok(Response::new(ListSessionsResponse {
            sessions,
            next_cursor,
        }))
    }

    async fn get_session(
        &self,
        req: Request<GetSessionRequest>,
    ) -> Result<Response<SessionDetail>, Status> {
        let viewer_team = self.team_scope(&req).await?;
        let id = req.into_inner().id;
        let key = sessions::SessionKey::parse(&id).map_err(AdminError::Invalid)?;
        match sessions::get(&self.pool, &key, viewer_team)
            .await
            .map_err(AdminError::from)?
        {
            Some(d) => Ok(Response::new(d)),
            None => Err(AdminError::NotFound(format!("no session {id:?}")).into()),
        }
    }

    async fn get_leaderboard(
        &self,
        req: Request<GetLeaderboardRequest>,
    ) -> Result<Response<GetLeaderboardResponse>, Status> {
        let team = self.team_scope(&req).await?;
        let range = Range::parse(&req.get_ref().range).map_err(AdminError::Invalid)?;
        Ok(Response::new(self.leaderboard(team, range).await?))
    }

    async fn get_harness_usage(
        &self,
        req: Request<GetHarnessUsageRequest>,
    ) -> Result<Response<GetHarnessUsageResponse>, Status> {
        let team = self.team_scope(&req).await?;
        let range = Range::parse(&req.get_ref().range).map_err(AdminError::Invalid)?;
        Ok(Response::new(self.harness_usage(team, range).await?))
    }

    async fn set_request_log_feedback(
        &self,
        req: Request<SetRequestLogFeedbackRequest>,
    ) -> Result<Response<Feedback>, Status> {
        let scope = self.feedback_scope(&req).await?;
        let (only_user, only_sa) = match scope {
            FeedbackScope::Any => (None, None),
            FeedbackScope::User(u) => (Some(u), None),
            FeedbackScope::ServiceAccount(sa) => (None, Some(sa)),
        };
        let r = req.into_inner();
        if r.scores.is_empty() && r.labels.is_empty() && r.comment.is_empty() {
            return Err(
                AdminError::Invalid("feedback needs a score, a label or a comment".into()).into(),
            );
        }
        for (name, v) in &r.scores {
            validate::validate_key("score", name).map_err(AdminError::from)?;
            if !v.is_finite() {
                return Err(
                    AdminError::Invalid(format!("score {name:?} must be a finite number")).into(),
                );
            }
        }
        for l in &r.labels {
            validate::validate_key("label", l).map_err(AdminError::from)?;
        }
        if r.comment.len() > 4096 {
            return Err(AdminError::Invalid("comment must be at most 4096 bytes".into()).into());
        }
        let by_log_id = Uuid::parse_str(&r.id).ok();
        // Merge in one statement, so concurrent calls do not lose each other's scores or labels.
        let request_id_2 = request_id_is("t", "$2");
        let merged: Option<serde_json::Value> = sqlx::query_scalar(&format!(
            "WITH target AS (
                 SELECT t.log_id, t.created_at FROM request_logs t
                 WHERE (t.log_id = $1 OR ($1 IS NULL AND {request_id_2}))
                   AND ($6::uuid IS NULL OR (t.user_id = $6 AND t.service_account_id IS NULL))
                   AND ($7::uuid IS NULL OR t.service_account_id = $7)
                 ORDER BY t.log_id DESC LIMIT 1
             )
             UPDATE request_logs l SET feedback = jsonb_build_object(
                 'scores', coalesce(l.feedback->'scores', '{{}}') || $3::jsonb,
                 'labels', (SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), '[]')
                            FROM jsonb_array_elements_text(coalesce(l.feedback->'labels', '[]') || $4::jsonb) x),
                 'comment', CASE WHEN $5 = '' THEN coalesce(l.feedback->'comment', '\"\"') ELSE to_jsonb($5::text) END,
                 'updated_at', to_jsonb(now()))
             FROM target WHERE l.log_id = target.log_id AND l.created_at = target.created_at
             RETURNING l.feedback"
        ))
        .bind(by_log_id)
        .bind(&r.id)
        .bind(serde_json::to_value(&r.scores).unwrap_or_default())
        .bind(serde_json::to_value(&r.labels).unwrap_or_default())
        .bind(&r.comment)
        .bind(only_user)
        .bind(only_sa)
        .fetch_optional(&self.pool)
        .await
        .map_err(AdminError::from)?;
        match merged {
            Some(f) => Ok(Response::new(feedback_from_json(&f))),
            None => Err(AdminError::NotFound(format!("no request log {:?}", r.id)).into()),
        }
    }
}

impl AdminService {
    /// Runs a reconciliation and answers it with exact dollar figures and a total.
    async fn reconcile_spend_inner(
        &self,
        r: ReconcileSpendRequest,
    ) -> Result<ReconcileSpendResponse, AdminError> {
        let done = crate::reconcile::run(&self.pool, &self.reconcile, &r).await?;
        let line = |day: String, model: String, p: i64, w: i64, requests: u64, unpriced: u64| {
            ReconciliationLine {
                day,
                model,
                provider_usd: pricing::format_usd(p),
                weir_usd: pricing::format_usd(w),
                difference_usd: pricing::format_usd(p - w),
                provider_pusd: p,
                weir_pusd: w,
                difference_pusd: p - w,
                requests,
                unpriced,
            }
        };
        let lines = done.lines;
        let total = line(
            String::new(),
            String::new(),
            lines.iter().map(|l| l.provider_pusd).sum(),
            lines.iter().map(|l| l.weir_pusd).sum(),
            lines.iter().map(|l| l.requests).sum(),
            lines.iter().map(|l| l.unpriced).sum(),
        );
        Ok(ReconcileSpendResponse {
            lines: lines
                .into_iter()
                .map(|l| {
                    line(
                        l.day.to_string(),
                        l.model,
                        l.provider_pusd,
                        l.weir_pusd,
                        l.requests,
                        l.unpriced,
                    )
                })
                .collect(),
            total: Some(total),
            source: done.source.into(),
            weir_providers: done.providers,
        })
    }

    /// Validates every price first, then stores them all in one transaction.
    async fn store_prices(&self, reqs: &[SetPriceRequest]) -> Result<Vec<Price>, AdminError> {
        let now = Utc::now();
        let mut parsed = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let at = |e: String| {
                if reqs.len() == 1 {
                    AdminError::Invalid(e)
                } else {
                    AdminError::Invalid(format!("prices[{i}] ({}): {e}", r.model_key))
                }
            };
            validate::validate_key("model", &r.model_key).map_err(|e| at(e.message))?;
            let sheet = crate::prices::sheet_from_request(r).map_err(at)?;
            let from = crate::prices::valid_from(&r.valid_from, now).map_err(at)?;
            parsed.push((r.model_key.as_str(), sheet, from));
        }
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(parsed.len());
        for (model, sheet, from) in &parsed {
            let (id, valid_from) = crate::prices::insert(&mut tx, model, sheet, *from).await?;
            out.push(crate::prices::to_message(model, id, valid_from, sheet));
        }
        bump(&mut tx, ResourceType::Pricing).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The team a caller is confined to, if any.
    async fn team_scope<T>(&self, req: &Request<T>) -> Result<Option<Uuid>, AdminError> {
        Ok(match self.caller(req).await? {
            Caller::PlatformAdmin => None,
            Caller::TeamViewer(t) => Some(t),
        })
    }

    async fn leaderboard(
        &self,
        team: Option<Uuid>,
        range: Range,
    ) -> Result<GetLeaderboardResponse, AdminError> {
        let now = Utc::now();
        let buckets = range.buckets(now);
        let since = buckets[0];
        let totals = usage_rollup::user_totals(&self.pool, since, team).await?;
        let ids: Vec<Uuid> = totals.iter().map(|t| t.user_id).collect();
        let names: HashMap<Uuid, String> =
            sqlx::query_as("SELECT id, name FROM users WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut ranked = leaderboard::rank_users(&totals, &names);
        ranked.truncate(leaderboard::TABLE_ROWS);
        let table: Vec<Uuid> = ranked.iter().map(|r| r.user_id).collect();
        let models = usage_rollup::user_models(&self.pool, since, team, &table).await?;
        let top: Vec<Uuid> = ranked
            .iter()
            .take(leaderboard::CHART_SERIES)
            .map(|r| r.user_id)
            .collect();
        let points = usage_rollup::user_buckets(&self.pool, since, team, &top).await?;
        let chart = ranked
            .iter()
            .take(leaderboard::CHART_SERIES)
            .map(|r| {
                chart_series(
                    &buckets,
                    points.get(&r.user_id),
                    r.user_id.to_string(),
                    &r.name,
                )
            })
            .collect();
        let rows = ranked
            .into_iter()
            .enumerate()
            .map(|(i, r)| LeaderboardRow {
                rank: i as u32 + 1,
                user_id: r.user_id.to_string(),
                user_name: r.name,
                cost_usd: pricing::format_usd(r.cost_pusd),
                cost_pusd: r.cost_pusd,
                requests: r.requests,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                dominant_model: leaderboard::dominant_model(
                    models.get(&r.user_id).map_or(&[][..], Vec::as_slice),
                ),
                avg_exposed_tools: r.avg_exposed_tools,
                avg_invoked_tools: r.avg_invoked_tools,
            })
            .collect();
        Ok(GetLeaderboardResponse {
            range: range.name().into(),
            since: ts(since),
            until: ts(now),
            bucket_starts: buckets.iter().map(|b| ts(*b)).collect(),
            rows,
            chart,
        })
    }

    async fn harness_usage(
        &self,
        team: Option<Uuid>,
        range: Range,
    ) -> Result<GetHarnessUsageResponse, AdminError> {
        let now = Utc::now();
        let buckets = range.buckets(now);
        let since = buckets[0];
        let mut ranked = leaderboard::rank_harnesses(
            usage_rollup::harness_totals(&self.pool, since, team).await?,
        );
        ranked.truncate(leaderboard::TABLE_ROWS);
        let top: Vec<String> = ranked
            .iter()
            .take(leaderboard::CHART_SERIES)
            .map(|h| h.key.clone())
            .collect();
        let points = usage_rollup::harness_buckets(&self.pool, since, team, &top).await?;
        let chart = ranked
            .iter()
            .take(leaderboard::CHART_SERIES)
            .map(|h| chart_series(&buckets, points.get(&h.key), h.key.clone(), &h.label))
            .collect();
        let rows = ranked
            .into_iter()
            .enumerate()
            .map(|(i, h)| HarnessUsageRow {
                rank: i as u32 + 1,
                harness: h.key,
                label: h.label,
                requests: h.requests,
                cost_usd: pricing::format_usd(h.cost_pusd),
                cost_pusd: h.cost_pusd,
            })
            .collect();
        Ok(GetHarnessUsageResponse {
            range: range.name().into(),
            since: ts(since),
            until: ts(now),
            bucket_starts: buckets.iter().map(|b| ts(*b)).collect(),
            rows,
            chart,
        })
    }
}

/// One charted entry: its per-bucket points zero-filled over `buckets`.
fn chart_series(
    buckets: &[DateTime<Utc>],
    points: Option<&Vec<(DateTime<Utc>, i64, u64)>>,
    key: String,
    name: &str,
) -> ChartSeries {
    let (cost_pusd, requests) =
        leaderboard::zero_fill(buckets, points.map_or(&[][..], Vec::as_slice));
    ChartSeries {
        key,
        name: name.to_string(),
        cost_pusd,
        requests,
    }
}

async fn read_purge_runs(
    pool: &PgPool,
    id: Option<i64>,
    limit: i64,
) -> Result<Vec<PurgeRun>, AdminError> {
    let rows = sqlx::query(
        "SELECT id, trigger, dry_run, replica, retention, cutoff, started_at, finished_at,
                duration_ms, partitions_dropped, request_logs, payloads, tags, attempts, error,
                scheduled_day::text AS scheduled_day
         FROM purge_runs WHERE $1::bigint IS NULL OR id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let n = |r: &sqlx::postgres::PgRow, c: &str| r.get::<i64, _>(c).max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| PurgeRun {
            id: r.get("id"),
            trigger: r.get("trigger"),
            dry_run: r.get("dry_run"),
            replica: r.get("replica"),
            retention: r.get("retention"),
            cutoff: ts(r.get("cutoff")),
            started_at: ts(r.get("started_at")),
            finished_at: opt_ts(r.get("finished_at")),
            duration_ms: r.get::<Option<i64>, _>("duration_ms").unwrap_or(0).max(0) as u64,
            partitions_dropped: r.get::<i32, _>("partitions_dropped").max(0) as u32,
            request_logs: n(r, "request_logs"),
            payloads: n(r, "payloads"),
            tags: n(r, "tags"),
            attempts: n(r, "attempts"),
            error: r.get("error"),
            scheduled_day: r
                .get::<Option<String>, _>("scheduled_day")
                .unwrap_or_default(),
        })
        .collect())
}

async fn read_dataplanes(pool: &PgPool, node: Option<&str>) -> Result<Vec<Dataplane>, AdminError> {
    let rows = sqlx::query(
        "SELECT node_id, fleet_group, software_version, address, labels, acked_versions, last_nack,
                last_nack_at, connected_since, last_seen, control_plane
         FROM dataplanes WHERE $1::text IS NULL OR node_id = $1 ORDER BY fleet_group, node_id",
    )
    .bind(node)
    .fetch_all(pool)
    .await?;
    let current: Vec<(String, i64)> =
        sqlx::query_as("SELECT resource_type, version FROM config_versions")
            .fetch_all(pool)
            .await?;
    let map = |v: serde_json::Value| -> std::collections::HashMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(rows
        .iter()
        .map(|r| Dataplane {
            node_id: r.get("node_id"),
            fleet_group: r.get("fleet_group"),
            software_version: r.get("software_version"),
            address: r.get("address"),
            labels: map(r.get("labels")),
            acked_versions: map(r.get("acked_versions")),
            current_versions: current
                .iter()
                .map(|(t, v)| (t.clone(), v.to_string()))
                .collect(),
            last_nack: r.get::<Option<String>, _>("last_nack").unwrap_or_default(),
            last_nack_at: opt_ts(r.get("last_nack_at")),
            connected_since: opt_ts(r.get("connected_since")),
            last_seen: ts(r.get("last_seen")),
            control_plane: r.get("control_plane"),
            connected: r
                .get::<Option<DateTime<Utc>>, _>("connected_since")
                .is_some(),
        })
        .collect())
}

async fn list_limits(pool: &PgPool) -> Result<Vec<Limits>, AdminError> {
    let rows = sqlx::query(
        "SELECT 'key' AS kind, id, display_prefix AS name, limits FROM api_keys
           WHERE limits <> '{}' AND revoked_at IS NULL
         UNION ALL SELECT 'user', id, name, limits FROM users WHERE limits <> '{}'
         UNION ALL SELECT 'team', id, name, limits FROM teams WHERE limits <> '{}'
         ORDER BY 1, 3",
    )
    .fetch_all(pool)
    .await?;
    let now_ms = Utc::now().timestamp_millis();
    let mut parsed = Vec::with_capacity(rows.len());
    let mut budgeted = Vec::new();
    for r in &rows {
        let kind: String = r.get("kind");
        let id: Uuid = r.get("id");
        let stored: StoredLimits = serde_json::from_value(r.get("limits")).unwrap_or_default();
        let period = stored.period();
        budgeted.push(crate::budget_spend::Subject {
            kind: kind.clone(),
            id,
            period: period.clone(),
        });
        parsed.push((kind, id, r.get::<String, _>("name"), stored, period));
    }
    let mut conn = pool.acquire().await?;
    let spent = crate::budget_spend::spends(&mut conn, &budgeted, now_ms).await?;
    let mut out = Vec::with_capacity(rows.len());
    for ((kind, id, name, stored, period), spent) in parsed.into_iter().zip(spent) {
        out.push(Limits {
            subject: format!("{kind}:{id}"),
            name,
            requests_per_minute: stored.requests_per_minute,
            tokens_per_minute: stored.tokens_per_minute,
            budget_usd: stored
                .budget_pusd
                .map(pricing::format_usd)
                .unwrap_or_default(),
            budget_period: period,
            spent_usd: pricing::format_usd(spent),
        });
    }
    Ok(out)
}

/// `{table}.request_id` is `id`, written so the partial request-id index serves it (migration
/// 0021): ids the gateway minted are log ids and are looked up by log id instead.
fn request_id_is(table: &str, id: &str) -> String {
    format!("({table}.request_id = {id} AND {table}.request_id <> replace({table}.log_id::text, '-', ''))")
}

/// How many logs carry `l`'s request id: those in the partial request-id index, plus the log
/// that minted it when it is a minted id (found by log id).
fn same_request_id_count() -> String {
    let indexed = request_id_is("s", "l.request_id");
    format!(
        "((SELECT count(*) FROM request_logs s WHERE {indexed})
          + CASE WHEN l.request_id ~ '^[0-9a-f]{{32}}$'
              THEN (SELECT count(*) FROM request_logs m
                    WHERE m.log_id = l.request_id::uuid AND m.request_id = l.request_id)
              ELSE 0 END)"
    )
}

/// A request log's capture policy as one JSON document: rows since migration 0019 keep it in
/// typed columns, older rows as `policy` jsonb.
const POLICY_DOC: &str = "COALESCE(l.policy, jsonb_build_object(
    'capture_mode', l.capture_mode, 'request_max_bytes', l.request_max_bytes,
    'response_max_bytes', l.response_max_bytes, 'stream_max_events', l.stream_max_events,
    'policy_version', l.policy_version, 'operation', l.operation, 'stream', l.stream))";

/// The policy of `group` (falling back to the default when the group has none of its own).
async fn read_policy(
    conn: &mut sqlx::PgConnection,
    group: &str,
) -> Result<PayloadPolicy, AdminError> {
    let r = sqlx::query(
        "SELECT p.fleet_group, p.capture_mode, p.request_max_bytes, p.response_max_bytes,
                p.stream_max_events, p.redaction_paths, p.updated_at, v.version
         FROM payload_policies p, config_versions v
         WHERE p.fleet_group IN ($1, '') AND v.resource_type = 'payload_policy'
         ORDER BY (p.fleet_group = $1) DESC LIMIT 1",
    )
    .bind(group)
    .fetch_one(&mut *conn)
    .await?;
    Ok(PayloadPolicy {
        fleet_group: r.get("fleet_group"),
        capture_mode: r.get("capture_mode"),
        request_max_bytes: r.get::<i32, _>("request_max_bytes") as u32,
        response_max_bytes: r.get::<i32, _>("response_max_bytes") as u32,
        stream_max_events: r.get::<i32, _>("stream_max_events") as u32,
        redaction_paths: r.get("redaction_paths"),
        version: r.get::<i64, _>("version").to_string(),
        updated_at: ts(r.get("updated_at")),
    })
}

const KEY_SELECT: &str =
    "SELECT k.id, k.name, k.display_prefix, k.owner_user_id, u.name AS owner_user_name,
        k.user_id, k.allowed_models, k.expires_at, k.revoked_at, k.created_at, k.fleet_groups,
        k.owner_service_account_id, st.name || '/' || sa.name AS owner_service_account_name,
        k.team_id
 FROM api_keys k LEFT JOIN users u ON u.id = k.owner_user_id
      LEFT JOIN service_accounts sa ON sa.id = k.owner_service_account_id
      LEFT JOIN teams st ON st.id = sa.team_id";

fn key_from_row(r: &sqlx::postgres::PgRow) -> ApiKey {
    let id = |c: &str| {
        r.get::<Option<Uuid>, _>(c)
            .map(|u| u.to_string())
            .unwrap_or_default()
    };
    ApiKey {
        id: r.get::<Uuid, _>("id").to_string(),
        name: r.get("name"),
        display_prefix: r.get("display_prefix"),
        owner_user_id: id("owner_user_id"),
        owner_user_name: r
            .get::<Option<String>, _>("owner_user_name")
            .unwrap_or_default(),
        user_id: id("user_id"),
        allowed_models: r.get("allowed_models"),
        expires_at: opt_ts(r.get("expires_at")),
        revoked_at: opt_ts(r.get("revoked_at")),
        created_at: ts(r.get("created_at")),
        fleet_groups: r.get("fleet_groups"),
        owner_service_account_id: id("owner_service_account_id"),
        owner_service_account_name: r
            .get::<Option<String>, _>("owner_service_account_name")
            .unwrap_or_default(),
        team_id: id("team_id"),
    }
}

fn feedback_from_json(f: &serde_json::Value) -> Feedback {
    Feedback {
        scores: f
            .get("scores")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default(),
        labels: f
            .get("labels")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default(),
        comment: f
            .get("comment")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string(),
        updated_at: f
            .get("updated_at")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

const ADMIN_TOKEN_SELECT: &str =
    "SELECT a.id, a.name, a.role, a.team_id, t.name AS team_name, a.created_at, a.revoked_at
     FROM admin_tokens a LEFT JOIN teams t ON t.id = a.team_id";

fn admin_token_from_row(r: &sqlx::postgres::PgRow) -> AdminToken {
    AdminToken {
        id: r.get::<Uuid, _>("id").to_string(),
        name: r.get("name"),
        role: r.get("role"),
        team_id: r
            .get::<Option<Uuid>, _>("team_id")
            .map(|u| u.to_string())
            .unwrap_or_default(),
        team_name: r.get::<Option<String>, _>("team_name").unwrap_or_default(),
        created_at: ts(r.get("created_at")),
        revoked_at: opt_ts(r.get("revoked_at")),
    }
}

/// A new admin token: 32 random bytes, hex, with a prefix that says what it is.
fn new_admin_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("weir-admin-{hex}")
}

/// Who owns a new key and whom its traffic is attributed to.
struct KeyOwner {
    user: Option<(Uuid, String)>,
    service_account: Option<(Uuid, String)>,
    attributed_user: Option<Uuid>,
    team_id: Option<Uuid>,
}

/// A team by id or name.
async fn find_team(pool: &PgPool, team: &str) -> Result<(Uuid, String), AdminError> {
    sqlx::query_as(
        "SELECT id, name FROM teams WHERE id::text = $1 OR name = $1 ORDER BY (id::text = $1) DESC LIMIT 1",
    )
    .bind(team)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| AdminError::NotFound(format!("team {team:?} not found")))
}

/// A user by id or name.
async fn find_user(pool: &PgPool, user: &str) -> Result<(Uuid, String), AdminError> {
    sqlx::query_as(
        "SELECT id, name FROM users WHERE id::text = $1 OR name = $1 ORDER BY (id::text = $1) DESC LIMIT 1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| AdminError::NotFound(format!("user {user:?} not found")))
}

/// Teams with their member names; callers add WHERE and GROUP BY t.id.
const TEAM_SELECT: &str = "SELECT t.id, t.name, t.created_at,
        coalesce(array_agg(u.name ORDER BY u.name) FILTER (WHERE u.name IS NOT NULL), '{}') AS members
 FROM teams t LEFT JOIN team_members m ON m.team_id = t.id LEFT JOIN users u ON u.id = m.user_id";

/// An optional RFC 3339 time from a request field named `what`.
fn optional_time(what: &str, v: &str) -> Result<Option<DateTime<Utc>>, AdminError> {
    if v.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| AdminError::Invalid(format!("{what} {v:?} is not RFC 3339: {e}")))
}

/// A team with its members, by id.
async fn team_view(pool: &PgPool, id: Uuid) -> Result<Team, AdminError> {
    let row = sqlx::query(&format!("{TEAM_SELECT} WHERE t.id = $1 GROUP BY t.id"))
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(team_from_row(&row))
}

fn team_from_row(r: &sqlx::postgres::PgRow) -> Team {
    Team {
        id: r.get::<Uuid, _>("id").to_string(),
        name: r.get("name"),
        created_at: ts(r.get("created_at")),
        members: r.get("members"),
    }
}

fn service_account_from_row(r: &sqlx::postgres::PgRow) -> ServiceAccount {
    ServiceAccount {
        id: r.get::<Uuid, _>("id").to_string(),
        name: r.get("name"),
        team_id: r.get::<Uuid, _>("team_id").to_string(),
        team_name: r.get("team_name"),
        created_at: ts(r.get("created_at")),
    }
}

const SUMMARY_COLUMNS: &str =
    "l.log_id, l.request_id, l.created_at, l.operation, l.stream, l.model_key,
        l.provider_key, l.status_code, l.outcome, l.duration_us, l.input_tokens, l.output_tokens,
        l.total_tokens, l.user_id, l.api_key_id, l.cost_pusd, l.pricing_status, l.harness_key";

fn summary_from_row(r: &sqlx::postgres::PgRow) -> RequestLogSummary {
    let u64_col = |name: &str| r.get::<Option<i64>, _>(name).map(|v| v.max(0) as u64);
    let id = |c: &str| {
        r.get::<Option<Uuid>, _>(c)
            .map(|u| u.to_string())
            .unwrap_or_default()
    };
    RequestLogSummary {
        log_id: r.get::<Uuid, _>("log_id").to_string(),
        request_id: r.get("request_id"),
        created_at: ts(r.get("created_at")),
        operation: r.get("operation"),
        stream: r.get("stream"),
        model_key: r.get("model_key"),
        provider_key: r.get("provider_key"),
        status_code: r.get::<i32, _>("status_code") as u32,
        outcome: r.get("outcome"),
        duration_ms: (r.get::<i64, _>("duration_us").max(0) as u64) / 1000,
        input_tokens: u64_col("input_tokens"),
        output_tokens: u64_col("output_tokens"),
        total_tokens: u64_col("total_tokens"),
        user_id: id("user_id"),
        api_key_id: id("api_key_id"),
        cost_usd: r
            .get::<Option<i64>, _>("cost_pusd")
            .map(pricing::format_usd)
            .unwrap_or_default(),
        pricing_status: r
            .get::<Option<String>, _>("pricing_status")
            .unwrap_or_default(),
        harness: r.get("harness_key"),
    }
}

/// Cursor: `<created_at micros>.<log id>`, the keyset of the last row of a page.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid), AdminError> {
    let bad = || AdminError::Invalid(format!("cursor {s:?} is not one this server issued"));
    let (micros, id) = s.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let c = encode_cursor(at, id);
        assert_eq!(decode_cursor(&c).unwrap(), (at, id));
        for bad in ["", "x", "1.2", "abc.def", &format!("x.{id}")] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let cases = [
            (AdminError::Unauthenticated, tonic::Code::Unauthenticated),
            (AdminError::NotFound("x".into()), tonic::Code::NotFound),
            (
                AdminError::AlreadyExists("x".into()),
                tonic::Code::AlreadyExists,
            ),
            (
                AdminError::Invalid("x".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                AdminError::PermissionDenied("x".into()),
                tonic::Code::PermissionDenied,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e).code(), code);
        }
    }
}
