//! Upstream secrets stored by the control plane: sealed with AES-256-GCM before they reach
//! Postgres, opened only to build the config sent to authenticated data planes.
//!
//! The sealing key comes from `WEIR_SECRETS_KEY` (64 hex digits), or, with the embedded
//! Postgres only, from `<data dir>/secrets.key`, created on first use. Replicas sharing an
//! external database must share the key, so there it has to be given.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "WEIR_SECRETS_KEY must be 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)"
    )]
    BadKey,
    #[error("{path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("no key for stored secrets: set WEIR_SECRETS_KEY (the same on every control-plane replica) to store provider secrets with an external database")]
    NoKey,
    #[error("the stored secret of provider {0:?} cannot be opened with this key (was WEIR_SECRETS_KEY changed?)")]
    Open(String),
    #[error("the system random generator failed")]
    Random,
}

/// The sealing key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A key from 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, SecretError> {
        let bytes = decode_hex(hex.trim()).ok_or(SecretError::BadKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadKey)?;
        Ok(SecretBox {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// The key in `path`, created (0600, random) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(hex) => Self::from_hex(&hex),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| SecretError::Random)?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(err)?;
                f.write_all(hex.as_bytes()).map_err(err)?;
                f.sync_all().map_err(err)?;
                Self::from_hex(&hex)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Seals `secret` for the provider with id `provider_id` (bound in as associated data, so a
    /// sealed value copied to another provider does not open): nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, provider_id: &str, secret: &str) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut out = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(provider_id.as_bytes()),
                &mut out,
            )
            .map_err(|_| SecretError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        Ok(sealed)
    }

    /// Opens what `seal` produced for the same provider.
    pub fn open(
        &self,
        provider_id: &str,
        provider_key: &str,
        sealed: &[u8],
    ) -> Result<String, SecretError> {
        let fail = || SecretError::Open(provider_key.to_string());
        if sealed.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(provider_id.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        String::from_utf8(plain.to_vec()).map_err(|_| fail())
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_secrets_open_only_for_their_provider_and_key() {
        let b = SecretBox::from_hex(KEY).unwrap();
        let sealed = b.seal("p1", "sk-live-123").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(b.open("p1", "openai", &sealed).unwrap(), "sk-live-123");
        // Two seals of one secret differ (random nonce).
        assert_ne!(sealed, b.seal("p1", "sk-live-123").unwrap());
        // Another provider's id, another key, a flipped bit or a stub: refused, not garbage.
        assert!(b.open("p2", "other", &sealed).is_err());
        let other = SecretBox::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert!(other.open("p1", "openai", &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(b.open("p1", "openai", &flipped).is_err());
        assert!(b.open("p1", "openai", &sealed[..5]).is_err());
    }

    #[test]
    fn keys_must_be_32_hex_bytes() {
        for bad in [
            "",
            "abc",
            &KEY[..62],
            &format!("{KEY}00"),
            &KEY.replace('0', "g"),
        ] {
            assert!(SecretBox::from_hex(bad).is_err(), "{bad:?}");
        }
        assert!(SecretBox::from_hex(&format!(" {KEY}\n")).is_ok());
    }

    #[test]
    fn a_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        let sealed = a.seal("p", "s").unwrap();
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open("p", "k", &sealed).unwrap(), "s");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
