//! The node's last good config on local disk, so it can start and serve while the control plane
//! is unreachable. One file per resource type holds the control plane's response as received;
//! nothing secret is in it (providers name the environment variable that holds their secret,
//! keys are hashes).

use std::path::{Path, PathBuf};

use prost::Message;
use weir_proto::config::DiscoveryResponse;

fn file(dir: &Path, resource_type: i32) -> PathBuf {
    dir.join(format!("resource-{resource_type}.pb"))
}

/// Writes one applied response, atomically (temporary file, then rename).
pub fn save(dir: &Path, resp: &DiscoveryResponse) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = file(dir, resp.r#type);
    let tmp = target.with_extension("pb.tmp");
    std::fs::write(&tmp, resp.encode_to_vec())?;
    std::fs::rename(&tmp, &target)
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
    use weir_proto::config::{discovery_response::Resources, ProviderSet};

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
