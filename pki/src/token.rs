//! Bearer tokens for the HTTP interface (SPEC section 7: "over HTTP, that or a bearer token the
//! cluster issued").
//!
//! A token is `stockd_<id>_<secret>`: `id` is 16 random bytes in lowercase hex (32 digits), the
//! credential id that `stockctl credentials revoke` names, and `secret` 32 random bytes in hex
//! (64 digits). Whoever issues a token (`stockctl token create`) generates both, shows the token
//! once and sends the cluster only the id, the principal and the SHA-256 of the secret; a node
//! checks a presented token by hashing its secret and comparing with the stored hash in constant
//! time ([`Token::verify`]), so neither a log entry, a snapshot nor a timing difference gives
//! the secret away.

use std::path::{Path, PathBuf};

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

use crate::client::{ClientRole, Principal, DEFAULT_ADMIN};
use crate::{err, with_setup_lock, write_private, TlsError};

/// What every token starts with (so a leaked one is easy to recognise and to scan for).
pub const TOKEN_PREFIX: &str = "stockd_";
/// Bytes of a token id (hex-encoded: twice as many digits).
pub const TOKEN_ID_BYTES: usize = 16;
/// Bytes of a token secret (hex-encoded: twice as many digits).
pub const TOKEN_SECRET_BYTES: usize = 32;
/// File (next to `ca.pem`) of the administrator token that the embedded default and `dev`
/// write, mode 0600 like `admin.key`.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A bearer token: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The credential id, [`TOKEN_ID_BYTES`] bytes as lowercase hex.
    pub id: String,
    secret: [u8; TOKEN_SECRET_BYTES],
}

// The secret must not reach logs through `{:?}`.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, secret hidden)", self.id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Token {
    /// A new token from the system's random source.
    pub fn generate() -> Result<Token, TlsError> {
        let rng = ring::rand::SystemRandom::new();
        let mut id = [0u8; TOKEN_ID_BYTES];
        let mut secret = [0u8; TOKEN_SECRET_BYTES];
        rng.fill(&mut id)
            .and_then(|()| rng.fill(&mut secret))
            .map_err(|_| TlsError("the system's random source failed".to_owned()))?;
        Ok(Token {
            id: hex(&id),
            secret,
        })
    }

    /// Reads a token's text (`stockd_<32 hex>_<64 hex>`, either case); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.trim().strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        unhex::<TOKEN_ID_BYTES>(id)?;
        Some(Token {
            id: id.to_ascii_lowercase(),
            secret: unhex::<TOKEN_SECRET_BYTES>(secret)?,
        })
    }

    /// The token as its holder presents it (`Authorization: Bearer <this>`).
    pub fn text(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, hex(&self.secret))
    }

    /// SHA-256 of the secret: what the cluster stores.
    pub fn secret_hash(&self) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// Whether this token's secret hashes to `stored`, compared in constant time.
    pub fn verify(&self, stored: &[u8; 32]) -> bool {
        bool::from(self.secret_hash().ct_eq(stored))
    }
}

/// The principal a token stands for: the grant the cluster stored for `id`. `None` if the
/// stored role is not a role (a grant written by a newer version).
pub fn token_principal(
    id: &str,
    name: &str,
    role: &str,
    channels: &[String],
    locations: &[String],
    expires_at_ms: u64,
) -> Option<Principal> {
    Some(Principal {
        name: name.to_owned(),
        role: ClientRole::parse(role)?,
        channels: channels.to_vec(),
        locations: locations.to_vec(),
        credential_id: id.to_owned(),
        expires_at_ms,
    })
}

/// The administrator token file in `ca_dir`, created (mode 0600) with a new token if missing:
/// the embedded default and `dev` write it next to `ca.pem` so the README's curl commands work
/// with no extra step. The node proposes its grant to the cluster (only the hash is stored).
pub fn ensure_admin_token(ca_dir: &Path) -> Result<(PathBuf, Token), TlsError> {
    let path = ca_dir.join(ADMIN_TOKEN_FILE);
    let read = |path: &Path| -> Result<Option<Token>, TlsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Token::parse(&text)
                .map(Some)
                .ok_or_else(|| TlsError(format!("{}: not a stockd token", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(path.display(), e)),
        }
    };
    if let Some(token) = read(&path)? {
        return Ok((path, token));
    }
    // Under the setup lock, written whole: nodes started at once on one CA directory must all
    // end with the one token in the file.
    let token = with_setup_lock(ca_dir, || {
        if let Some(token) = read(&path)? {
            return Ok(token);
        }
        let token = Token::generate()?;
        write_private(&path, &format!("{}\n", token.text()))?;
        Ok(token)
    })?;
    Ok((path, token))
}

/// The name of the administrator token's principal.
pub const ADMIN_TOKEN_NAME: &str = DEFAULT_ADMIN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_from_its_text_and_verifies_only_its_own_hash() {
        let token = Token::generate().expect("random");
        let text = token.text();
        assert!(text.starts_with(TOKEN_PREFIX) && text.len() == 7 + 32 + 1 + 64);
        let back = Token::parse(&format!(
            " {}\n",
            text.to_uppercase().replace("STOCKD_", "stockd_")
        ))
        .expect("parses");
        assert_eq!(back, token);
        assert!(back.verify(&token.secret_hash()));
        let other = Token::generate().expect("random");
        assert!(!other.verify(&token.secret_hash()));
        assert!(
            !format!("{token:?}").contains(&text[40..]),
            "Debug hides the secret"
        );
        for bad in [
            "",
            "stockd_",
            "stockd_00_11",
            "bearer",
            &text[..text.len() - 1],
            &text.replace('_', "-"),
        ] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_admin_token_file_is_private_and_kept() {
        let dir = std::env::temp_dir().join(format!("stockd-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (path, first) = ensure_admin_token(&dir).expect("written");
        let (_, again) = ensure_admin_token(&dir).expect("read back");
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
