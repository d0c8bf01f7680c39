//! The OpenAPI document of the HTTP admin API, generated from the same descriptors the routes
//! come from, so the two cannot disagree. The checked-in copy is `docs/openapi.json`; a test
//! fails when it drifts (`weir-control-plane openapi > docs/openapi.json` refreshes it).

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use crate::http_routes::{query_params, BodyMode, Routes};

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_text(routes: &Routes) -> String {
    let mut s = serde_json::to_string_pretty(&document(routes)).unwrap_or_default();
    s.push('\n');
    s
}

/// The OpenAPI 3.1 document describing every route.
pub fn document(routes: &Routes) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    for r in &routes.routes {
        let input = r.rpc.input();
        let output = r.rpc.output();
        collect_schemas(&input, &mut schemas);
        collect_schemas(&output, &mut schemas);
        let mut params: Vec<Value> = r
            .path_vars()
            .map(|v| {
                let f = input.get_field_by_name(v);
                json!({
                    "name": v,
                    "in": "path",
                    "required": true,
                    "description": f.as_ref().map(field_doc).unwrap_or_default(),
                    "schema": {"type": "string"},
                })
            })
            .collect();
        for q in query_params(r) {
            if let Some(f) = input.get_field_by_name(&q) {
                let mut p = json!({
                    "name": q,
                    "in": "query",
                    "required": false,
                    "schema": field_schema(&f),
                });
                let doc = field_doc(&f);
                if !doc.is_empty() {
                    p["description"] = json!(doc);
                }
                if f.is_list() {
                    p["explode"] = json!(true);
                }
                params.push(p);
            }
        }
        let mut op = json!({
            "operationId": r.rpc.name(),
            "tags": [tag(&r.template)],
            "summary": summary(r.rpc.name()),
            "description": comments(&r.rpc.parent_file(), r.rpc.path()),
            "parameters": params,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": schema_ref(&output)}},
                },
                "default": {
                    "description": "An error: 400 invalid_argument, 401 unauthenticated, 403 permission_denied, 404 not_found, 409 already_exists, ...",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        });
        if r.body == BodyMode::Whole {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(&input)}},
            });
        }
        paths
            .entry(r.template.clone())
            .or_default()
            .insert(r.method.to_ascii_lowercase(), op);
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {
                    "code": {"type": "string", "description": "The gRPC status code in snake case, e.g. not_found."},
                    "message": {"type": "string"},
                    "status": {"type": "integer", "description": "The HTTP status."},
                },
            }},
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weir admin API",
            "version": "v1",
            "description": "The HTTP JSON form of the weir.admin.v1.Admin gRPC service, with the same semantics (docs/admin-api.md). Every call needs `Authorization: Bearer <admin token>`; POST /api/v1/feedback/{id} also takes a gateway key of the request's owner. Field names are the proto field names; 64-bit integers are JSON numbers.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    })
}

/// "ListRequestLogs" → "List request logs".
fn summary(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first path segment after the API prefix, e.g. "observability".
fn tag(template: &str) -> String {
    let rest = template
        .strip_prefix("/api/v1/admin/")
        .or_else(|| template.strip_prefix("/api/v1/"))
        .unwrap_or(template);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn schema_name(m: &MessageDescriptor) -> String {
    m.full_name()
        .strip_prefix("weir.admin.v1.")
        .unwrap_or(m.full_name())
        .replace('.', "_")
}

fn schema_ref(m: &MessageDescriptor) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(m))})
}

fn collect_schemas(m: &MessageDescriptor, out: &mut BTreeMap<String, Value>) {
    let name = schema_name(m);
    if out.contains_key(&name) {
        return;
    }
    out.insert(name.clone(), Value::Null);
    let mut props = Map::new();
    for f in m.fields() {
        let mut s = field_schema(&f);
        let doc = field_doc(&f);
        if !doc.is_empty() {
            if let Some(o) = s.as_object_mut() {
                if o.contains_key("$ref") {
                    // A sibling of $ref is allowed in 3.1, but wrap for older tooling.
                    s = json!({"allOf": [s], "description": doc});
                } else {
                    o.insert("description".into(), json!(doc));
                }
            }
        }
        props.insert(f.name().to_string(), s);
        let nested = match f.kind() {
            Kind::Message(inner) if f.is_map() => match inner.map_entry_value_field().kind() {
                Kind::Message(v) => Some(v),
                _ => None,
            },
            Kind::Message(inner) => Some(inner),
            _ => None,
        };
        if let Some(n) = nested {
            collect_schemas(&n, out);
        }
    }
    let mut schema = json!({"type": "object", "properties": props});
    let doc = comments(&m.parent_file(), m.path());
    if !doc.is_empty() {
        schema["description"] = json!(doc);
    }
    out.insert(name, schema);
}

fn field_schema(f: &FieldDescriptor) -> Value {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return json!({"type": "object"});
        };
        return json!({
            "type": "object",
            "additionalProperties": kind_schema(&entry.map_entry_value_field().kind()),
        });
    }
    let one = kind_schema(&f.kind());
    if f.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn kind_schema(k: &Kind) -> Value {
    match k {
        Kind::String => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int32", "minimum": 0})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "integer", "format": "int64"})
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "integer", "format": "int64", "minimum": 0})
        }
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()})
        }
        Kind::Message(m) => schema_ref(m),
    }
}

fn field_doc(f: &FieldDescriptor) -> String {
    comments(&f.parent_file(), f.path())
}

/// The leading comment of the element at `path` in `file`, lines joined.
fn comments(file: &FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in document is the one the control plane serves.
    #[test]
    fn checked_in_document_matches_the_descriptors() {
        let routes = Routes::load().unwrap();
        let generated = document_text(&routes);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            generated == checked_in,
            "docs/openapi.json is out of date with the admin proto: run \
             `cargo run -p weir-control-plane -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn document_covers_routes_parameters_and_schemas() {
        let doc = document(&Routes::load().unwrap());
        let list = &doc["paths"]["/api/v1/admin/observability/request-logs"]["get"];
        assert_eq!(list["operationId"], "ListRequestLogs");
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for want in [
            "model_key",
            "tag_key",
            "tag_value",
            "harness",
            "since",
            "cursor",
        ] {
            assert!(names.contains(&want), "missing {want} in {names:?}");
        }
        let fb = &doc["paths"]["/api/v1/admin/observability/request-logs/{id}/feedback"]["post"];
        assert_eq!(
            fb["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SetRequestLogFeedbackRequest"
        );
        let scores = &doc["components"]["schemas"]["Feedback"]["properties"]["scores"];
        assert_eq!(scores["type"], "object");
        assert_eq!(scores["additionalProperties"]["type"], "number");
        let rows = &doc["components"]["schemas"]["GetLeaderboardResponse"]["properties"]["rows"];
        assert_eq!(rows["items"]["$ref"], "#/components/schemas/LeaderboardRow");
        assert_eq!(summary("GetRequestLog"), "Get request log");
    }
}
