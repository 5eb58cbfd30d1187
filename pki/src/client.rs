//! Client identities (SPEC section 7): certificates issued from the cluster CA that carry a
//! principal's name, role and scope.
//!
//! Encoding (docs/PROTOCOL.md, "Identities"): the subject alternative names of a client
//! certificate hold URNs, one fact each:
//! - `urn:stockd:client:NAME` — the principal's name (exactly one);
//! - `urn:stockd:role:ROLE` — `reader`, `checkout`, `store`, `ops` or `admin` (exactly one);
//! - `urn:stockd:channel:C` — a channel a `checkout` identity may sell on (any number);
//! - `urn:stockd:location:L` — a location a `store` identity may act at (any number).
//!
//! The certificate's serial number (16 random bytes, hex) is the credential id that
//! `stockctl credentials revoke` names; its validity period is the credential's expiry. A
//! client certificate has extended key usage `clientAuth` only and no DNS name, so it can never
//! serve as a node; a node certificate carries no `urn:stockd:role`, so it is never a client.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{err, with_setup_lock, write_private, write_public, Identity, TlsError, TlsFiles};

/// URN prefix of the facts a client certificate carries.
pub const URN_PREFIX: &str = "urn:stockd:";
/// Channels or locations one identity may name.
pub const SCOPE_ENTRIES_MAX: usize = 64;
/// Longest validity of a client certificate, days (10 years).
pub const CLIENT_DAYS_MAX: u32 = 3_650;
/// Validity of a client certificate when none is asked for, days.
pub const CLIENT_DAYS_DEFAULT: u32 = 365;
/// Bytes of a principal's name, channel or location id.
pub const NAME_BYTES_MAX: usize = 64;
/// File stem of the administrator identity that the embedded default and `dev` write next to
/// `ca.pem` (`admin.pem`, `admin.key`), so that `stockctl` and the demo work with no extra step.
pub const DEFAULT_ADMIN: &str = "admin";

/// What a principal may do (SPEC section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientRole {
    /// Queries and the change feed.
    Reader,
    /// Reader + reserve, extend, release and place orders, on its channels.
    Checkout,
    /// Reader + stock, sale, order, pickup, return and transfer writes at its own locations,
    /// channel `pos`.
    Store,
    /// Every ledger write.
    Ops,
    /// Ops + cluster membership and credentials.
    Admin,
}

impl ClientRole {
    /// Every role, least powerful first.
    pub const ALL: [ClientRole; 5] = [
        ClientRole::Reader,
        ClientRole::Checkout,
        ClientRole::Store,
        ClientRole::Ops,
        ClientRole::Admin,
    ];

    /// The role's name, as in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Reader => "reader",
            ClientRole::Checkout => "checkout",
            ClientRole::Store => "store",
            ClientRole::Ops => "ops",
            ClientRole::Admin => "admin",
        }
    }

    /// Parses a role's name.
    pub fn parse(s: &str) -> Option<ClientRole> {
        ClientRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking: the facts of a client certificate (or, over HTTP, of a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name given at issue (1..=[`NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`).
    pub name: String,
    /// What it may do.
    pub role: ClientRole,
    /// Channels a `checkout` principal may sell on.
    pub channels: Vec<String>,
    /// Locations a `store` principal may act at.
    pub locations: Vec<String>,
    /// The credential id: the certificate's serial number, lowercase hex.
    pub credential_id: String,
    /// End of validity, ms since the epoch.
    pub expires_at_ms: u64,
}

impl Principal {
    /// Whether a `checkout` principal may sell on `channel` (exact match of the id).
    pub fn sells_on(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
    }

    /// Whether a `store` principal may act at `location` (exact match of the id).
    pub fn acts_at(&self, location: &str) -> bool {
        self.locations.iter().any(|l| l == location)
    }
}

/// What to put in a new client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertRequest {
    /// The principal's name; also the files' stem (`NAME.pem`, `NAME.key`).
    pub name: String,
    /// Its role.
    pub role: ClientRole,
    /// Channels (for `checkout`).
    pub channels: Vec<String>,
    /// Locations (for `store`).
    pub locations: Vec<String>,
    /// Validity, days (1..=[`CLIENT_DAYS_MAX`]).
    pub days: u32,
}

/// A client certificate written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedClient {
    /// The certificate, then the CA's.
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
    /// What the certificate says.
    pub principal: Principal,
}

fn valid_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= NAME_BYTES_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
}

impl ClientCertRequest {
    /// Checks the request: names, scope that fits the role, validity.
    pub fn check(&self) -> Result<(), TlsError> {
        if !valid_name(&self.name, b"") {
            return Err(TlsError(format!(
                "client name {:?}: 1..={NAME_BYTES_MAX} bytes of [A-Za-z0-9._-]",
                self.name
            )));
        }
        for id in self.channels.iter().chain(&self.locations) {
            if !valid_name(id, b":/") {
                return Err(TlsError(format!(
                    "{id:?}: ids are 1..={NAME_BYTES_MAX} bytes of [A-Za-z0-9._:/-]"
                )));
            }
        }
        if self.channels.len() > SCOPE_ENTRIES_MAX || self.locations.len() > SCOPE_ENTRIES_MAX {
            return Err(TlsError(format!(
                "at most {SCOPE_ENTRIES_MAX} channels and {SCOPE_ENTRIES_MAX} locations"
            )));
        }
        match self.role {
            ClientRole::Checkout if self.channels.is_empty() => Err(TlsError(
                "a checkout identity needs at least one --channel".to_owned(),
            )),
            ClientRole::Store if self.locations.is_empty() => Err(TlsError(
                "a store identity needs at least one --location".to_owned(),
            )),
            _ if !(1..=CLIENT_DAYS_MAX).contains(&self.days) => {
                Err(TlsError(format!("--days must be 1..={CLIENT_DAYS_MAX}")))
            }
            _ => Ok(()),
        }
    }

    fn subject_alt_names(&self) -> Result<Vec<SanType>, TlsError> {
        let mut urns = vec![
            format!("{URN_PREFIX}client:{}", self.name),
            format!("{URN_PREFIX}role:{}", self.role),
        ];
        urns.extend(
            self.channels
                .iter()
                .map(|c| format!("{URN_PREFIX}channel:{c}")),
        );
        urns.extend(
            self.locations
                .iter()
                .map(|l| format!("{URN_PREFIX}location:{l}")),
        );
        urns.into_iter()
            .map(|u| {
                let ia5 = u.clone().try_into().map_err(|e| err(&u, e))?;
                Ok(SanType::URI(ia5))
            })
            .collect()
    }
}

/// Issues a client certificate signed by the CA in `ca_dir` into `out_dir` as `NAME.pem`
/// (certificate then CA) and `NAME.key`. Refuses to overwrite existing files.
pub fn issue_client(
    ca_dir: &Path,
    out_dir: &Path,
    request: &ClientCertRequest,
) -> Result<IssuedClient, TlsError> {
    request.check()?;
    let cert_path = out_dir.join(format!("{}.pem", request.name));
    let key_path = out_dir.join(format!("{}.key", request.name));
    if cert_path.exists() || key_path.exists() {
        return Err(TlsError(format!(
            "{} exists: revoke it (stockctl credentials revoke) and remove it first, or pick another name",
            cert_path.display()
        )));
    }
    let (issuer, ca_pem) = load_issuer(ca_dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("client", e))?;
    params.subject_alt_names = request.subject_alt_names()?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("stockd client {}", request.name),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| TlsError("no randomness for a serial number".to_owned()))?;
    serial[0] &= 0x7f; // a positive INTEGER in DER
    params.serial_number = Some(serial.to_vec().into());
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind the issuer's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(request.days));
    let key = KeyPair::generate().map_err(|e| err("client key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| err("client certificate", e))?;
    std::fs::create_dir_all(out_dir).map_err(|e| err(out_dir.display(), e))?;
    write_private(&key_path, &key.serialize_pem())?;
    write_public(&cert_path, &format!("{}{}", cert.pem(), ca_pem))?;
    let principal = principal_of(cert.der())?;
    Ok(IssuedClient {
        cert: cert_path,
        key: key_path,
        principal,
    })
}

/// Writes the [`DEFAULT_ADMIN`] identity next to the CA in `ca_dir` unless it is there.
pub fn ensure_admin(ca_dir: &Path) -> Result<(), TlsError> {
    let cert_path = ca_dir.join(format!("{DEFAULT_ADMIN}.pem"));
    if cert_path.exists() {
        return Ok(());
    }
    // Under the setup lock: nodes started at once on one CA directory all get here.
    with_setup_lock(ca_dir, || {
        if cert_path.exists() {
            return Ok(());
        }
        // A key without its certificate is what a crash between the two writes leaves.
        let key_path = ca_dir.join(format!("{DEFAULT_ADMIN}.key"));
        if key_path.exists() {
            std::fs::remove_file(&key_path).map_err(|e| err(key_path.display(), e))?;
        }
        let request = ClientCertRequest {
            name: DEFAULT_ADMIN.to_owned(),
            role: ClientRole::Admin,
            channels: Vec::new(),
            locations: Vec::new(),
            days: CLIENT_DAYS_MAX,
        };
        issue_client(ca_dir, ca_dir, &request).map(|_| ())
    })
}

fn load_issuer(ca_dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), TlsError> {
    let TlsFiles { ca_pem, ca_key, .. } = TlsFiles::in_dir(ca_dir);
    let ca_cert_pem = std::fs::read_to_string(&ca_pem).map_err(|e| err(ca_pem.display(), e))?;
    let key_pem = std::fs::read_to_string(&ca_key).map_err(|e| err(ca_key.display(), e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| err(ca_key.display(), e))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, key).map_err(|e| err(ca_pem.display(), e))?;
    Ok((issuer, ca_cert_pem))
}

/// Loads a client identity (certificate chain and key) from two PEM files.
pub fn load_client_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = crate::load_certs(cert)?;
    principal_of(&chain[0]).map_err(|e| err(cert.display(), e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key.display(), e))?;
    Ok(Identity { chain, key })
}

/// Reads the principal a client certificate names. A certificate without exactly one
/// `urn:stockd:client` and one `urn:stockd:role` (a node's certificate, say) is not a client.
pub fn principal_of(cert: &CertificateDer<'_>) -> Result<Principal, TlsError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| err("client certificate", e))?;
    let mut names = Vec::new();
    let mut roles = Vec::new();
    let (mut channels, mut locations) = (Vec::new(), Vec::new());
    let sans = x509
        .subject_alternative_name()
        .map_err(|e| err("client certificate", e))?;
    for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(fact) = uri.strip_prefix(URN_PREFIX) else {
            continue;
        };
        match fact.split_once(':') {
            Some(("client", n)) => names.push(n.to_owned()),
            Some(("role", r)) => roles.push(r.to_owned()),
            Some(("channel", c)) => channels.push(c.to_owned()),
            Some(("location", l)) => locations.push(l.to_owned()),
            _ => {}
        }
    }
    let (name, role) = match (names.as_slice(), roles.as_slice()) {
        ([name], [role]) => (name.clone(), role.clone()),
        ([], []) => {
            return Err(TlsError(
                "not a client certificate (no stockd role)".to_owned(),
            ))
        }
        _ => {
            return Err(TlsError(
                "a client certificate names one client and one role".to_owned(),
            ))
        }
    };
    let role = ClientRole::parse(&role)
        .ok_or_else(|| TlsError(format!("unknown role {role:?} in the certificate")))?;
    let expires = x509.validity().not_after.timestamp();
    Ok(Principal {
        name,
        role,
        channels,
        locations,
        credential_id: crate::hex(x509.raw_serial()),
        expires_at_ms: u64::try_from(expires).unwrap_or(0).saturating_mul(1_000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stockd-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_client_certificate_carries_its_principal() {
        let dir = temp("client");
        crate::ensure_ca(&dir).expect("CA");
        let request = ClientCertRequest {
            name: "tablet-1".to_owned(),
            role: ClientRole::Store,
            channels: Vec::new(),
            locations: vec!["store-1".to_owned(), "eu:par:2".to_owned()],
            days: 30,
        };
        let issued = issue_client(&dir, &dir, &request).expect("issued");
        let p = &issued.principal;
        assert_eq!((p.name.as_str(), p.role), ("tablet-1", ClientRole::Store));
        assert_eq!(p.locations, request.locations);
        assert_eq!(p.credential_id.len(), 32, "16 bytes of serial, hex");
        let days = (p.expires_at_ms / 1_000).saturating_sub(now_s()) / 86_400;
        assert!((29..=30).contains(&days), "{days} days");
        let identity = load_client_identity(&issued.cert, &issued.key).expect("loads");
        assert_eq!(principal_of(&identity.chain[0]).expect("principal"), *p);
        assert!(issue_client(&dir, &dir, &request).is_err(), "no overwrite");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_node_certificate_is_not_a_client() {
        let dir = temp("node");
        crate::ensure_ca(&dir).expect("CA");
        crate::ensure_node(&dir, &dir, &[]).expect("node");
        let node = crate::load_identity(&dir).expect("node identity");
        assert!(principal_of(&node.chain[0]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn requests_are_checked() {
        let ok = ClientCertRequest {
            name: "web".to_owned(),
            role: ClientRole::Checkout,
            channels: vec!["web".to_owned()],
            locations: Vec::new(),
            days: 1,
        };
        assert!(ok.check().is_ok());
        let bad = |f: fn(&mut ClientCertRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            r.check().is_err()
        };
        assert!(bad(|r| r.channels.clear()), "checkout without channel");
        assert!(bad(|r| r.name = "a/b".to_owned()), "a path in a name");
        assert!(bad(|r| r.days = 0));
        assert!(bad(|r| r.days = CLIENT_DAYS_MAX + 1));
        assert!(bad(
            |r| r.channels = vec!["x".to_owned(); SCOPE_ENTRIES_MAX + 1]
        ));
        assert!(bad(|r| {
            r.role = ClientRole::Store;
            r.locations.clear();
        }));
    }

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
