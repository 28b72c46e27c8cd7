//! Static API keys. The configuration holds only their SHA-256, so a leaked configuration
//! does not leak keys; a presented key is hashed and compared with every entry in constant
//! time, without stopping at the first match.

use super::{Identity, IdentityKind};

/// One configured key: its digest and what it grants.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

/// The API keys and the header that carries them.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeys {
    pub header: String,
    pub keys: Vec<ApiKey>,
}

impl ApiKeys {
    /// The identity of the key whose SHA-256 equals that of `presented`, if any.
    pub fn identify(&self, presented: &[u8]) -> Option<Identity> {
        let digest = hmac_sha256::Hash::hash(presented);
        let mut found = None;
        for key in &self.keys {
            let diff = key
                .sha256
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(key);
            }
        }
        found.map(|key| Identity {
            kind: IdentityKind::ApiKey {
                name: key.name.clone(),
            },
            subject: key.name.clone(),
            roles: key.roles.clone(),
            scopes: key.scopes.clone(),
            claims: Default::default(),
            expires_at: None,
        })
    }
}

/// Parses 64 hex digits into a SHA-256 digest.
pub(crate) fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_digests() {
        let digest = hmac_sha256::Hash::hash(b"secret");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_sha256(&hex), Some(digest));
        assert_eq!(parse_sha256(&hex.to_uppercase()), Some(digest));
        for bad in [
            "",
            "ab",
            &hex[1..],
            &format!("{}g", &hex[1..]),
            &format!("+{}", &hex[1..]),
        ] {
            assert_eq!(parse_sha256(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifies_only_the_matching_key() {
        let key = |name: &str, secret: &[u8]| ApiKey {
            name: name.into(),
            sha256: hmac_sha256::Hash::hash(secret),
            roles: vec![format!("{name}-role")],
            scopes: vec!["tools:call".into()],
        };
        let keys = ApiKeys {
            header: "x-api-key".into(),
            keys: vec![key("ci", b"ci-secret"), key("ops", b"ops-secret")],
        };
        let ops = keys.identify(b"ops-secret").unwrap();
        assert_eq!(ops.kind, IdentityKind::ApiKey { name: "ops".into() });
        assert_eq!(
            (ops.subject.as_str(), ops.roles.as_slice()),
            ("ops", &["ops-role".to_owned()][..])
        );
        assert!(keys.identify(b"ops-secreT").is_none());
        assert!(keys.identify(b"").is_none());
    }
}
