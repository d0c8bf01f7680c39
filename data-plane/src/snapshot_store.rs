//! The node's last good config on local disk, so it can start and serve while the control plane
//! is unreachable. One file per resource type holds the control plane's response as received;
//! nothing secret is in it (providers name the environment variable that holds their secret,
//! keys are hashes).

use std::path::{Path, PathBuf};

use prost::Message;
use weir_proto::config::discovery_response::Resources;
use weir_proto::config::{ApiKeyDelta, ApiKeySet, DiscoveryResponse};

fn file(dir: &Path, resource_type: i32) -> PathBuf {
    dir.join(format!("resource-{resource_type}.pb"))
}

/// Writes one applied response, atomically (temporary file, then rename). A key delta is folded
/// into the saved full key set, so the file always holds a set a fresh node can apply.
pub fn save(dir: &Path, resp: &DiscoveryResponse) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let full = match &resp.resources {
        Some(Resources::ApiKeyDelta(d)) => {
            let target = file(dir, resp.r#type);
            let saved = std::fs::read(&target)
                .ok()
                .and_then(|b| DiscoveryResponse::decode(b.as_slice()).ok());
            match saved {
                Some(DiscoveryResponse {
                    version,
                    resources: Some(Resources::ApiKeys(set)),
                    ..
                }) if version == d.base_version => DiscoveryResponse {
                    resources: Some(Resources::ApiKeys(merge(set, d))),
                    ..resp.clone()
                },
                // Nothing to fold into: keep what is there rather than a partial set.
                _ => return Ok(()),
            }
        }
        _ => resp.clone(),
    };
    let target = file(dir, full.r#type);
    let tmp = target.with_extension("pb.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&full.encode_to_vec())?;
    }
    std::fs::rename(&tmp, &target)
}

fn merge(mut set: ApiKeySet, d: &ApiKeyDelta) -> ApiKeySet {
    let gone: std::collections::HashSet<&str> = d
        .removed_ids
        .iter()
        .map(String::as_str)
        .chain(d.upserts.iter().map(|k| k.id.as_str()))
        .collect();
    set.keys.retain(|k| !gone.contains(k.id.as_str()));
    set.keys.extend(d.upserts.iter().cloned());
    set
}

/// Every saved response that decodes; unreadable files are skipped (and the node then waits
/// for the control plane as if they were absent).
pub fn load(dir: &Path) -> Vec<DiscoveryResponse> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<DiscoveryResponse> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pb"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| DiscoveryResponse::decode(bytes.as_slice()).ok())
        .collect();
    out.sort_by_key(|r| r.r#type);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::config::{ApiKey, ProviderSet};

    #[test]
    fn key_deltas_are_folded_into_the_saved_full_set() {
        let dir = tempfile_dir();
        let key = |id: &str| ApiKey {
            id: id.into(),
            key_hash: vec![0; 32],
            ..Default::default()
        };
        let full = DiscoveryResponse {
            r#type: 3,
            version: "5".into(),
            nonce: "1".into(),
            resources: Some(Resources::ApiKeys(ApiKeySet {
                keys: vec![key("a"), key("b")],
            })),
        };
        save(&dir, &full).unwrap();
        let delta = DiscoveryResponse {
            r#type: 3,
            version: "6".into(),
            nonce: "2".into(),
            resources: Some(Resources::ApiKeyDelta(ApiKeyDelta {
                base_version: "5".into(),
                upserts: vec![key("c")],
                removed_ids: vec!["a".into()],
            })),
        };
        save(&dir, &delta).unwrap();
        let loaded = load(&dir);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].version, "6");
        let Some(Resources::ApiKeys(set)) = &loaded[0].resources else {
            panic!("a full set is saved")
        };
        let ids: Vec<&str> = set.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        // A delta on another base leaves the saved set alone.
        let stray = DiscoveryResponse {
            version: "9".into(),
            resources: Some(Resources::ApiKeyDelta(ApiKeyDelta {
                base_version: "8".into(),
                ..Default::default()
            })),
            ..delta
        };
        save(&dir, &stray).unwrap();
        assert_eq!(load(&dir)[0].version, "6");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn round_trip_and_garbage_is_skipped() {
        let dir = tempfile_dir();
        let resp = DiscoveryResponse {
            r#type: 1,
            version: "7".into(),
            nonce: "3".into(),
            resources: Some(Resources::Providers(ProviderSet::default())),
        };
        save(&dir, &resp).unwrap();
        std::fs::write(dir.join("resource-9.pb"), b"\xff\xff not protobuf").unwrap();
        let loaded = load(&dir);
        assert_eq!(loaded, vec![resp]);
        assert!(load(&dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-snap-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
