//! TLS for clients of the control plane's gRPC (data planes and `weirctl`): trust the CA the
//! operator names, or the public webpki roots when none is named.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig};

/// The client TLS settings for an `https://` control-plane URL.
pub fn client_config(ca: Option<&Path>) -> std::io::Result<ClientTlsConfig> {
    Ok(match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_webpki_roots(),
    })
}
