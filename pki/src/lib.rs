//! # stockd PKI
//!
//! TLS for every connection (SPEC section 6: "QUIC (TLS 1.3 always)").
//!
//! A cluster has one certificate authority (CA). Each node holds a certificate signed by it,
//! with the DNS name [`SERVER_NAME`] (and whatever host names the operator adds), and uses it
//! both as the server certificate (clients and peers connect to it) and as its client
//! certificate towards peers: node-to-node connections (ALPN [`protocol::ALPN_PEER`]) are mutual
//! TLS, the server side checking that the peer's certificate chains to the cluster CA.
//!
//! Clients trust either the CA certificate (`ca.pem`) or a pinned SHA-256 fingerprint of the CA
//! or of a node certificate. `stockd` prints both at startup.
//!
//! Files (PEM) in a TLS directory: `ca.pem`, `ca.key` (only where certificates are issued),
//! `node.pem` (node certificate then CA certificate), `node.key`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};

/// A DER-encoded X.509 certificate (rustls' type), as loaded from a PEM file.
pub use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

mod client;
pub mod token;
mod udp;

pub use client::{
    ensure_admin, issue_client, load_client_identity, principal_of, ClientCertRequest, ClientRole,
    IssuedClient, Principal, CLIENT_DAYS_DEFAULT, CLIENT_DAYS_MAX, DEFAULT_ADMIN, NAME_BYTES_MAX,
    SCOPE_ENTRIES_MAX, URN_PREFIX,
};
pub use token::{ensure_admin_token, token_principal, Token, ADMIN_TOKEN_FILE};
pub use udp::{endpoint, udp_socket, UdpBuffers, UDP_BUFFER_BYTES};

use protocol::{
    ALPN_CLIENT, ALPN_PEER, IDLE_TIMEOUT_MS, KEEP_ALIVE_MS, PEER_IDLE_TIMEOUT_MS,
    PEER_KEEP_ALIVE_MS, STREAMS_PER_CONNECTION_MAX,
};

/// The DNS name every node certificate carries and every client asks for: a node's identity is
/// "signed by the cluster CA", not its address, so nodes can move.
pub const SERVER_NAME: &str = "stockd";

/// A TLS setup error, with the file it concerns.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{context}: {e}"))
}

/// A node's certificate chain (node, then CA) and private key.
#[derive(Debug)]
pub struct Identity {
    /// Node certificate, then the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The TLS files of one directory (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca_pem: PathBuf,
    /// The cluster CA's private key (only where certificates are issued).
    pub ca_key: PathBuf,
    /// The node's certificate, then the CA's.
    pub node_pem: PathBuf,
    /// The node's private key.
    pub node_key: PathBuf,
}

impl TlsFiles {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca_pem: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            node_pem: dir.join("node.pem"),
            node_key: dir.join("node.key"),
        }
    }
}

/// Writes `contents` to `path`, readable by its owner only (mode 0600): for private keys and
/// tokens. Whole or not at all, as [`write_whole`].
fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_whole(path, contents, true)
}

/// Writes a public file (a certificate) whole or not at all, as [`write_whole`].
fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_whole(path, contents, false)
}

/// Distinguishes the temporary files of threads of one process writing at once.
static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `contents` to a temporary file beside `path`, syncs it and renames it over `path`, so
/// that a reader (another node starting on the same CA directory, or this one after a crash)
/// sees either no file or all of it, never a half-written key or token.
fn write_whole(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let seq = TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(".tmp-{}-{seq}", std::process::id()));
    let temp = std::path::PathBuf::from(temp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&temp);
        return Err(err(path.display(), e));
    }
    Ok(())
}

/// File in a CA directory that serialises the creation of its shared files (the CA, the
/// administrator's identity and token) between nodes started at once on it.
const SETUP_LOCK_FILE: &str = "ca.lock";

/// Runs `create` holding the exclusive setup lock of `dir` (created if missing). `create`
/// checks again for what it is about to create: whoever held the lock before may have made it.
fn with_setup_lock<T>(
    dir: &Path,
    create: impl FnOnce() -> Result<T, TlsError>,
) -> Result<T, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir.display(), e))?;
    let lock_path = dir.join(SETUP_LOCK_FILE);
    let lock = std::fs::File::create(&lock_path).map_err(|e| err(lock_path.display(), e))?;
    lock.lock().map_err(|e| err(lock_path.display(), e))?;
    let result = create();
    drop(lock);
    result
}

/// Creates a cluster CA in `dir` (`ca.pem`, `ca.key`) unless one is there.
///
/// Nodes started at once on one CA directory (`--ca-dir` on one machine) must not each make
/// their own CA: creation holds the directory's setup lock, and whoever comes second finds the
/// first one's files, each written whole.
pub fn ensure_ca(dir: &Path) -> Result<(), TlsError> {
    let TlsFiles { ca_pem, ca_key, .. } = TlsFiles::in_dir(dir);
    if ca_pem.exists() && ca_key.exists() {
        return Ok(());
    }
    with_setup_lock(dir, || {
        if ca_pem.exists() && ca_key.exists() {
            return Ok(());
        }
        let key = KeyPair::generate().map_err(|e| err("CA key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "stockd cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(|e| err("CA", e))?;
        write_private(&ca_key, &key.serialize_pem())?;
        write_public(&ca_pem, &cert.pem())
    })
}

/// Issues a node certificate into `node_dir` (`node.pem`, `node.key`, and a copy of `ca.pem`),
/// signed by the CA in `ca_dir`, unless `node_dir` already has one. `names` are extra DNS names
/// or IP addresses besides [`SERVER_NAME`].
pub fn ensure_node(ca_dir: &Path, node_dir: &Path, names: &[String]) -> Result<(), TlsError> {
    let TlsFiles {
        node_pem, node_key, ..
    } = TlsFiles::in_dir(node_dir);
    if node_pem.exists() && node_key.exists() {
        return Ok(());
    }
    let TlsFiles {
        ca_pem,
        ca_key: ca_key_path,
        ..
    } = TlsFiles::in_dir(ca_dir);
    let ca_cert_pem = std::fs::read_to_string(&ca_pem).map_err(|e| err(ca_pem.display(), e))?;
    let ca_key_pem =
        std::fs::read_to_string(&ca_key_path).map_err(|e| err(ca_key_path.display(), e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| err(ca_key_path.display(), e))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|e| err(ca_pem.display(), e))?;
    let mut sans = vec![SERVER_NAME.to_owned()];
    sans.extend(names.iter().cloned());
    let mut params = CertificateParams::new(sans).map_err(|e| err("node certificate", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "stockd node");
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(|e| err("node key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| err("node certificate", e))?;
    std::fs::create_dir_all(node_dir).map_err(|e| err(node_dir.display(), e))?;
    write_private(&node_key, &key.serialize_pem())?;
    if ca_dir != node_dir {
        write_public(&node_dir.join("ca.pem"), &ca_cert_pem)?;
    }
    // Last: its presence is what says the node's identity is complete.
    write_public(&node_pem, &format!("{}{}", cert.pem(), ca_cert_pem))?;
    Ok(())
}

/// Loads `node.pem` and `node.key` from `dir`.
pub fn load_identity(dir: &Path) -> Result<Identity, TlsError> {
    let TlsFiles {
        node_pem, node_key, ..
    } = TlsFiles::in_dir(dir);
    let chain = load_certs(&node_pem)?;
    let key = PrivateKeyDer::from_pem_file(&node_key).map_err(|e| err(node_key.display(), e))?;
    Ok(Identity { chain, key })
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path.display(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path.display(), e))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// SHA-256 of a certificate (DER), lowercase hex: what `--fingerprint` pins.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}

/// Lowercase hex of bytes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store
            .add(cert.clone())
            .map_err(|e| err("CA certificate", e))?;
    }
    Ok(Arc::new(store))
}

fn transport(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    transport_with(IDLE_TIMEOUT_MS, keep_alive.then_some(KEEP_ALIVE_MS))
}

fn transport_with(idle_ms: u64, keep_alive_ms: Option<u64>) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        Duration::from_millis(idle_ms)
            .try_into()
            .expect("idle timeout fits"),
    ));
    t.max_concurrent_bidi_streams(STREAMS_PER_CONNECTION_MAX.into());
    t.max_concurrent_uni_streams(0u32.into());
    if let Some(ms) = keep_alive_ms {
        t.keep_alive_interval(Some(Duration::from_millis(ms)));
    }
    Arc::new(t)
}

/// The QUIC server configuration of a node: its identity for both ALPNs; every connection
/// must present a certificate of the cluster CA (SPEC section 7: no identity, no access), and
/// the node checks after the handshake that it is a client's on [`protocol::ALPN_CLIENT`] and a
/// node's on [`protocol::ALPN_PEER`]. 0-RTT is off (SPEC section 4: no 0-RTT writes).
pub fn server_config(
    identity: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
            .build()
            .map_err(|e| err("client verifier", e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("TLS", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| err("node certificate", e))?;
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec(), ALPN_PEER.to_vec()];
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| err("QUIC TLS", e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport(false));
    Ok(config)
}

/// The QUIC client configuration a node uses towards its peers: mutual TLS with its identity.
pub fn peer_client_config(
    identity: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("TLS", e))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| err("node certificate", e))?;
    tls.alpn_protocols = vec![ALPN_PEER.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| err("QUIC TLS", e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport_with(
        PEER_IDLE_TIMEOUT_MS,
        Some(PEER_KEEP_ALIVE_MS),
    ));
    Ok(config)
}

/// What a client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Nodes whose certificate chains to these CA certificates.
    Ca(Vec<CertificateDer<'static>>),
    /// Nodes presenting a certificate (node or CA) with this SHA-256 fingerprint (hex).
    Fingerprint(String),
}

/// The QUIC client configuration of a client: ALPN [`crate::ALPN_CLIENT`], keep-alives under the
/// idle timeout, no client certificate (see [`client_config_with`]).
pub fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(trust, None)
}

/// [`client_config`] presenting `identity` (a client certificate from
/// [`load_client_identity`]), which nodes require of every client (SPEC section 7).
pub fn client_config_with(
    trust: &Trust,
    identity: Option<&Identity>,
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("TLS", e))?;
    let verified = match trust {
        Trust::Ca(ca) => builder.with_root_certificates(roots(ca)?),
        Trust::Fingerprint(hex) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                fingerprint: hex.to_ascii_lowercase().replace(':', ""),
                provider: provider(),
            })),
    };
    let mut tls = match identity {
        None => verified.with_no_client_auth(),
        Some(id) => verified
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| err("client certificate", e))?,
    };
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| err("QUIC TLS", e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(true));
    Ok(config)
}

/// Accepts a server whose certificate chain contains a certificate with the pinned SHA-256
/// fingerprint, and checks the handshake signature with the end-entity key.
#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .any(|c| fingerprint(c) == self.fingerprint);
        if pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_ca_and_node_certificates_that_load() {
        let dir = std::env::temp_dir().join(format!("stockd-tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ensure_ca(&dir).expect("CA");
        ensure_node(&dir, &dir.join("n1"), &["127.0.0.1".to_owned()]).expect("node");
        let identity = load_identity(&dir.join("n1")).expect("identity");
        assert_eq!(identity.chain.len(), 2, "node certificate then CA");
        let ca = load_certs(&dir.join("ca.pem")).expect("CA cert");
        assert_eq!(identity.chain[1], ca[0]);
        assert_eq!(fingerprint(&ca[0]).len(), 64);
        server_config(&identity, &ca).expect("server config");
        peer_client_config(&identity, &ca).expect("peer config");
        client_config(&Trust::Ca(ca)).expect("client config");
        // A second call keeps the existing files.
        let before = std::fs::read(dir.join("n1/node.pem")).expect("read");
        ensure_node(&dir, &dir.join("n1"), &[]).expect("node again");
        assert_eq!(
            std::fs::read(dir.join("n1/node.pem")).expect("read"),
            before
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
