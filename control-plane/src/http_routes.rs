//! The admin API's HTTP routes, read from each gRPC method's `google.api.http` option, and the
//! binding of an HTTP request (path variables, query string, JSON body) to the method's request
//! message. No I/O: the serving side is `admin_http`.

use std::collections::BTreeSet;

use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, Value,
};

/// The admin service's full name.
pub const ADMIN_SERVICE: &str = "weir.admin.v1.Admin";

/// Why a request could not be bound to a method.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BindError {
    /// No route has this path.
    #[error("no admin endpoint {method} {path}")]
    NotFound { method: String, path: String },
    /// The path exists, for other methods.
    #[error("{path} does not accept {method} (it accepts {allowed})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
    /// The query, path or body does not fit the request message.
    #[error("{0}")]
    Invalid(String),
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// `{field}`: one path segment bound to a request field.
    Var(String),
}

/// How the body maps onto the request message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyMode {
    /// No body: every field comes from the path and the query string.
    None,
    /// `body: "*"`: the JSON body is the request message; path variables override it.
    Whole,
}

/// An HTTP binding of one gRPC method.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: String,
    /// The template as written, e.g. `/api/v1/admin/keys/{key}/revoke`.
    pub template: String,
    segments: Vec<Segment>,
    /// How the body is read.
    pub body: BodyMode,
    /// The gRPC method it calls.
    pub rpc: MethodDescriptor,
}

impl Route {
    /// The gRPC path of the method, e.g. `/weir.admin.v1.Admin/ListUsers`.
    pub fn grpc_path(&self) -> String {
        format!(
            "/{}/{}",
            self.rpc.parent_service().full_name(),
            self.rpc.name()
        )
    }

    /// Names of the fields bound from the path.
    pub fn path_vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Path variables of `path` when it matches this template.
    fn captures(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut vars = Vec::new();
        for (seg, part) in self.segments.iter().zip(path) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Var(_) if part.is_empty() => return None,
                Segment::Var(name) => vars.push((
                    name.clone(),
                    percent_encoding::percent_decode_str(part)
                        .decode_utf8_lossy()
                        .into_owned(),
                )),
            }
        }
        Some(vars)
    }
}

/// Path variables bound from a matched path: (field, value).
pub type PathVars = Vec<(String, String)>;

/// Every HTTP route of the admin service.
#[derive(Debug, Clone)]
pub struct Routes {
    /// In declaration order (the OpenAPI document lists them so).
    pub routes: Vec<Route>,
    /// The pool the routes' descriptors come from.
    pub pool: DescriptorPool,
}

impl Routes {
    /// Reads the routes from Weir's compiled descriptors.
    pub fn load() -> Result<Self, String> {
        let pool = DescriptorPool::decode(weir_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| format!("decoding Weir's descriptors: {e}"))?;
        Self::from_pool(pool, ADMIN_SERVICE)
    }

    /// Reads the routes of `service` from `pool`.
    pub fn from_pool(pool: DescriptorPool, service: &str) -> Result<Self, String> {
        let svc = pool
            .get_service_by_name(service)
            .ok_or_else(|| format!("no service {service} in the descriptors"))?;
        let ext = pool
            .get_extension_by_name("google.api.http")
            .ok_or("the descriptors lack google.api.http")?;
        let mut routes = Vec::new();
        for m in svc.methods() {
            let opts = m.options();
            if !opts.has_extension(&ext) {
                return Err(format!("{} has no google.api.http route", m.full_name()));
            }
            let Value::Message(rule) = opts.get_extension(&ext).into_owned() else {
                return Err(format!(
                    "{}: google.api.http is not a message",
                    m.full_name()
                ));
            };
            let mut rules = vec![rule.clone()];
            if let Some(Value::List(more)) = rule
                .get_field_by_name("additional_bindings")
                .map(|v| v.into_owned())
            {
                rules.extend(more.into_iter().filter_map(|v| match v {
                    Value::Message(m) => Some(m),
                    _ => None,
                }));
            }
            for r in rules {
                routes.push(route_from_rule(&m, &r)?);
            }
        }
        Ok(Routes { routes, pool })
    }

    /// The route for `method` and `path`, with its path variables.
    pub fn find(&self, method: &str, path: &str) -> Result<(&Route, PathVars), BindError> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let mut allowed = BTreeSet::new();
        // The route with the most literal segments wins, so `/keys/{key}` never shadows a
        // literal sibling.
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        for r in &self.routes {
            let Some(vars) = r.captures(&parts) else {
                continue;
            };
            if r.method != method {
                allowed.insert(r.method.clone());
                continue;
            }
            if best.as_ref().is_none_or(|(_, v)| vars.len() < v.len()) {
                best = Some((r, vars));
            }
        }
        match best {
            Some(found) => Ok(found),
            None if allowed.is_empty() => Err(BindError::NotFound {
                method: method.into(),
                path: path.into(),
            }),
            None => Err(BindError::MethodNotAllowed {
                method: method.into(),
                path: path.into(),
                allowed: allowed.into_iter().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

fn route_from_rule(m: &MethodDescriptor, rule: &DynamicMessage) -> Result<Route, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let (method, template) = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find_map(|verb| text(verb).map(|t| (verb.to_ascii_uppercase(), t)))
        .ok_or_else(|| {
            format!(
                "{}: a route needs get, put, post, delete or patch",
                m.full_name()
            )
        })?;
    let body = match text("body").as_deref() {
        None => BodyMode::None,
        Some("*") => BodyMode::Whole,
        Some(other) => {
            return Err(format!(
                "{}: body {other:?} is not supported (use \"*\" or none)",
                m.full_name()
            ))
        }
    };
    let input = m.input();
    let mut segments = Vec::new();
    for part in template.trim_start_matches('/').split('/') {
        if let Some(var) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let f = input.get_field_by_name(var).ok_or_else(|| {
                format!(
                    "{}: path variable {var} is not a request field",
                    m.full_name()
                )
            })?;
            if f.kind() != Kind::String || f.is_list() {
                return Err(format!(
                    "{}: path variable {var} must be a string field",
                    m.full_name()
                ));
            }
            segments.push(Segment::Var(var.to_string()));
        } else {
            segments.push(Segment::Literal(part.to_string()));
        }
    }
    // Matching splits the whole path, whose leading "/" yields an empty first part.
    segments.insert(0, Segment::Literal(String::new()));
    Ok(Route {
        method,
        template,
        segments,
        body,
        rpc: m.clone(),
    })
}

/// Builds the request message from the path variables, the query string and the body.
pub fn bind(
    route: &Route,
    vars: &[(String, String)],
    query: &str,
    body: &[u8],
) -> Result<DynamicMessage, BindError> {
    let desc = route.rpc.input();
    let mut msg = match route.body {
        BodyMode::Whole if !body.iter().all(u8::is_ascii_whitespace) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let m = DynamicMessage::deserialize_with_options(
                desc.clone(),
                &mut de,
                &DeserializeOptions::new(),
            )
            .map_err(|e| BindError::Invalid(format!("request body: {e}")))?;
            de.end()
                .map_err(|e| BindError::Invalid(format!("request body: {e}")))?;
            m
        }
        BodyMode::Whole => DynamicMessage::new(desc.clone()),
        BodyMode::None if body.iter().all(u8::is_ascii_whitespace) => {
            DynamicMessage::new(desc.clone())
        }
        BodyMode::None => {
            return Err(BindError::Invalid(format!(
                "{} {} takes no request body (its parameters go in the query string)",
                route.method, route.template
            )))
        }
    };
    if !query.is_empty() {
        if route.body == BodyMode::Whole {
            return Err(BindError::Invalid(format!(
                "{} {} takes its parameters in the JSON body, not the query string",
                route.method, route.template
            )));
        }
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let field = field_named(&desc, &k)
                .filter(|f| !route.path_vars().any(|p| p == f.name()))
                .ok_or_else(|| {
                    BindError::Invalid(format!(
                        "unknown query parameter {k:?} for {} {}; it accepts: {}",
                        route.method,
                        route.template,
                        query_params(route).join(", ")
                    ))
                })?;
            let value = scalar(&field, &v)?;
            if field.is_list() {
                match msg.get_field_mut(&field) {
                    Value::List(l) => l.push(value),
                    other => *other = Value::List(vec![value]),
                }
            } else {
                msg.set_field(&field, value);
            }
        }
    }
    for (name, value) in vars {
        let field = desc
            .get_field_by_name(name)
            .ok_or_else(|| BindError::Invalid(format!("unknown path variable {name}")))?;
        msg.set_field(&field, Value::String(value.clone()));
    }
    Ok(msg)
}

/// The query parameters a body-less route accepts (its request fields less the path ones).
pub fn query_params(route: &Route) -> Vec<String> {
    if route.body == BodyMode::Whole {
        return Vec::new();
    }
    route
        .rpc
        .input()
        .fields()
        .filter(|f| !route.path_vars().any(|p| p == f.name()))
        .map(|f| f.name().to_string())
        .collect()
}

fn field_named(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// A query-string value as the field's type.
fn scalar(field: &FieldDescriptor, raw: &str) -> Result<Value, BindError> {
    let bad = |what: &str| {
        BindError::Invalid(format!(
            "query parameter {}: {raw:?} is not {what}",
            field.name()
        ))
    };
    Ok(match field.kind() {
        Kind::String => Value::String(raw.to_string()),
        Kind::Bool => match raw {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(raw.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(raw.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            raw.parse()
                .map_err(|_| bad("a non-negative 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(raw.parse().map_err(|_| bad("a non-negative integer"))?)
        }
        Kind::Double => Value::F64(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Float => Value::F32(raw.parse().map_err(|_| bad("a number"))?),
        Kind::Enum(e) => match e.get_value_by_name(raw) {
            Some(v) => Value::EnumNumber(v.number()),
            None => return Err(bad("one of the enum's names")),
        },
        Kind::Bytes | Kind::Message(_) => {
            return Err(BindError::Invalid(format!(
                "{} cannot be given in the query string",
                field.name()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> &'static Routes {
        static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
        ROUTES.get_or_init(|| Routes::load().expect("routes"))
    }

    #[test]
    fn every_admin_method_has_a_route() {
        let r = routes();
        let svc = r.pool.get_service_by_name(ADMIN_SERVICE).unwrap();
        for m in svc.methods() {
            assert!(
                r.routes.iter().any(|x| x.rpc.name() == m.name()),
                "{} has no HTTP route",
                m.name()
            );
        }
    }

    #[test]
    fn routes_match_by_method_and_path() {
        let r = routes();
        // (method, path, Ok((rpc, path vars)) or Err(what the miss says)).
        type Want<'a> = Result<(&'a str, &'a [(&'a str, &'a str)]), &'a str>;
        let cases: &[(&str, &str, Want)] = &[
            ("GET", "/api/v1/admin/users", Ok(("ListUsers", &[]))),
            ("POST", "/api/v1/admin/users", Ok(("CreateUser", &[]))),
            ("GET", "/api/v1/admin/users/", Ok(("ListUsers", &[]))),
            (
                "GET",
                "/api/v1/admin/observability/request-logs/abc",
                Ok(("GetRequestLog", &[("id", "abc")])),
            ),
            (
                "GET",
                "/api/v1/admin/observability/leaderboard",
                Ok(("GetLeaderboard", &[])),
            ),
            (
                "PUT",
                "/api/v1/admin/limits/user%3Aalice",
                Ok(("SetLimits", &[("subject", "user:alice")])),
            ),
            (
                "DELETE",
                "/api/v1/admin/teams/core/members/ann",
                Ok(("RemoveTeamMember", &[("team", "core"), ("user", "ann")])),
            ),
            (
                "POST",
                "/api/v1/feedback/req-1",
                Ok(("SetRequestLogFeedback", &[("id", "req-1")])),
            ),
            ("GET", "/api/v1/admin/nothing", Err("not found")),
            ("GET", "/api/v1/admin/keys/k1/revoke", Err("POST")),
            ("DELETE", "/api/v1/admin/users", Err("GET, POST")),
        ];
        for (method, path, want) in cases {
            match (r.find(method, path), want) {
                (Ok((route, vars)), Ok((rpc, want_vars))) => {
                    assert_eq!(route.rpc.name(), *rpc, "{method} {path}");
                    let want: Vec<(String, String)> = want_vars
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect();
                    assert_eq!(vars, want, "{method} {path}");
                }
                (Err(BindError::NotFound { .. }), Err("not found")) => {}
                (Err(BindError::MethodNotAllowed { allowed, .. }), Err(a)) => {
                    assert_eq!(allowed, *a, "{method} {path}")
                }
                (got, want) => panic!("{method} {path}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn query_strings_bind_typed_fields_and_name_the_bad_ones() {
        let r = routes();
        let (route, vars) = r
            .find("GET", "/api/v1/admin/observability/request-logs")
            .unwrap();
        let m = bind(
            route,
            &vars,
            "model_key=gpt&statusCode=429&limit=5&tag_key=team&tag_value=a%2Fb",
            b"",
        )
        .unwrap();
        assert_eq!(
            m.get_field_by_name("model_key").unwrap().as_str(),
            Some("gpt")
        );
        assert_eq!(
            m.get_field_by_name("status_code").unwrap().as_u32(),
            Some(429)
        );
        assert_eq!(
            m.get_field_by_name("tag_value").unwrap().as_str(),
            Some("a/b")
        );

        let bad = [
            ("status_code=abc", "not a non-negative 32-bit integer"),
            ("colour=red", "unknown query parameter \"colour\""),
            ("limit=-1", "limit"),
        ];
        for (q, want) in bad {
            let err = bind(route, &vars, q, b"").unwrap_err().to_string();
            assert!(err.contains(want), "{q}: {err}");
        }
        let err = bind(route, &vars, "", b"{}").unwrap_err().to_string();
        assert!(err.contains("takes no request body"), "{err}");

        let (list_keys, v) = r.find("GET", "/api/v1/admin/keys").unwrap();
        let m = bind(list_keys, &v, "include_revoked=true", b"").unwrap();
        assert_eq!(
            m.get_field_by_name("include_revoked").unwrap().as_bool(),
            Some(true)
        );
        assert!(bind(list_keys, &v, "include_revoked=yes", b"").is_err());
    }

    proptest::proptest! {
        /// Whatever arrives (path, query, body), binding answers Ok or an error, never panics.
        #[test]
        fn binding_never_panics(
            method in proptest::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
            path in "(/[a-z%0-9{}:.-]{0,12}){0,7}",
            query in "[a-z_=&%0-9+.:-]{0,40}",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let r = routes();
            let full = format!("/api/v1/admin{path}");
            if let Ok((route, vars)) = r.find(method, &full) {
                let _ = bind(route, &vars, &query, &body);
            }
        }

        /// JSON-looking bodies for a route with maps, lists and optional fields.
        #[test]
        fn json_bodies_never_panic(body in "\\{(\"[a-z_]{1,10}\": ?(1|-1|1e999|\"x\"|\\[\\]|\\{\\}|null|true)(, )?){0,4}\\}") {
            let r = routes();
            let (route, vars) = r.find("PATCH", "/api/v1/admin/payload-policy").unwrap();
            let _ = bind(route, &vars, "", body.as_bytes());
            let (route, vars) = r.find("POST", "/api/v1/feedback/x").unwrap();
            let _ = bind(route, &vars, "", body.as_bytes());
        }
    }

    #[test]
    fn bodies_bind_as_json_and_path_variables_win() {
        let r = routes();
        let (route, vars) = r
            .find(
                "POST",
                "/api/v1/admin/observability/request-logs/log-1/feedback",
            )
            .unwrap();
        let m = bind(
            route,
            &vars,
            "",
            br#"{"id": "other", "scores": {"helpful": 1}, "labels": ["good"]}"#,
        )
        .unwrap();
        assert_eq!(m.get_field_by_name("id").unwrap().as_str(), Some("log-1"));
        let cases: &[(&[u8], &str)] = &[
            (b"{\"nope\": 1}", "unrecognized field name"),
            (b"{\"labels\": \"x\"}", "expected a list"),
            (b"[1]", "request body"),
            (b"{} trailing", "trailing"),
        ];
        for (body, want) in cases {
            let err = bind(route, &vars, "", body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        // An empty body is an empty message.
        let (create_team, v) = r.find("POST", "/api/v1/admin/teams").unwrap();
        assert!(bind(create_team, &v, "", b"").is_ok());
        let err = bind(create_team, &v, "name=x", b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("JSON body"), "{err}");
    }
}
