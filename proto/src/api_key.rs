//! Gateway API keys: how they look, and the hash under which they are stored and looked up.
//!
//! A key is `weir_sk_` followed by 40 random alphanumeric characters (about 238 bits). Because
//! keys are random and long, a single fast SHA-256 is the right hash (see ADR 0002): there is
//! nothing to brute-force that a slow hash would protect.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Every gateway key starts with this.
pub const PREFIX: &str = "weir_sk_";
/// Random characters after the prefix.
const SECRET_LEN: usize = 40;
/// Characters of the key shown in listings (the prefix plus 8 random characters).
pub const DISPLAY_LEN: usize = PREFIX.len() + 8;

/// A freshly minted key: the secret (shown once) and what may be stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    /// The full key; returned to the creator once and never stored.
    pub secret: String,
    /// SHA-256 of `secret`.
    pub hash: [u8; 32],
    /// Safe to store and show.
    pub display_prefix: String,
}

/// Mints a new random key.
pub fn mint() -> MintedKey {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{PREFIX}{random}");
    MintedKey {
        hash: hash(&secret),
        display_prefix: secret[..DISPLAY_LEN].to_string(),
        secret,
    }
}

/// The stored form of a key.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a presented credential has the shape of a gateway key, before any lookup.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == PREFIX.len() + SECRET_LEN
        && candidate.starts_with(PREFIX)
        && candidate[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_are_well_formed_and_distinct() {
        let a = mint();
        let b = mint();
        assert!(looks_like_key(&a.secret), "{}", a.secret);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert_ne!(a.hash, b.hash);
        assert!(a.secret.starts_with(&a.display_prefix));
        assert_eq!(a.display_prefix.len(), DISPLAY_LEN);
    }

    #[test]
    fn shape_check() {
        let cases = [
            ("", false),
            ("weir_sk_", false),
            ("sk-abc", false),
            (&*format!("weir_sk_{}", "a".repeat(40)), true),
            (&*format!("weir_sk_{}", "a".repeat(39)), false),
            (&*format!("weir_sk_{}!", "a".repeat(39)), false),
            (&*format!("WEIR_SK_{}", "a".repeat(40)), false),
        ];
        for (input, want) in cases {
            assert_eq!(looks_like_key(input), want, "{input:?}");
        }
    }

    #[test]
    fn hash_is_sha256() {
        // Known vector: SHA-256("abc").
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
