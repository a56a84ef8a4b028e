//! Node traffic: QUIC with mutual TLS (quinn, rustls), certificates from a
//! cluster CA made by `weir cluster init` (rcgen), and the request protocol.
//!
//! Every request is one bidirectional QUIC stream: the client sends a
//! length-prefixed JSON [`Request`], then (for ingest) the body, and finishes
//! its side; the node answers with length-prefixed JSON [`Response`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::access::Role;
use crate::error::{Certificate, NetError, Result, Transport};
use crate::schema::ColumnSpec;

mod client;
pub use client::Client;

/// The ALPN protocol name of Weir's node protocol.
pub const ALPN: &[u8] = b"weir/1";
/// The name node certificates are issued for, and clients check.
pub const SERVER_NAME: &str = "localhost";
/// A connection whose peer is silent this long is dead: a killed node is
/// noticed within this time.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Keep-alives: several per idle timeout, so a lost packet or two never
/// ends a live connection.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(400);
/// How long a client waits for a node to answer a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest frame accepted.
const MAX_FRAME: usize = 64 << 20;
/// The largest ingest request body.
pub const MAX_INGEST: usize = 1 << 30;

/// The files of a cluster's certificate directory.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
    identity: Option<String>,
}

impl CertDir {
    /// The directory `dir`; a client presents `admin.pem` when the directory
    /// has one, `client.pem` otherwise.
    pub fn new(dir: &Path) -> CertDir {
        CertDir {
            dir: dir.to_path_buf(),
            identity: None,
        }
    }

    /// The directory `dir`, where a client presents `NAME.pem` and `NAME.key`.
    pub fn with_identity(dir: &Path, identity: Option<String>) -> CertDir {
        CertDir {
            dir: dir.to_path_buf(),
            identity,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the certificate a client presents.
    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            if self.file("admin.pem").exists() {
                "admin".into()
            } else {
                "client".into()
            }
        })
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn read_chain(&self, name: &str) -> Result<Vec<CertificateDer<'static>>> {
        let path = self.file(name);
        let certs: Vec<_> = CertificateDer::pem_file_iter(&path)
            .cert(|| {
                format!(
                    "cannot read certificate {} (make one with `weir cluster init --dir {}`)",
                    path.display(),
                    self.dir.display()
                )
            })?
            .collect::<Result<_, _>>()
            .cert(|| format!("certificate {} is not valid PEM", path.display()))?;
        if certs.is_empty() {
            return Err(NetError::Certificate(format!(
                "{} holds no certificate",
                path.display()
            )));
        }
        Ok(certs)
    }
    fn read_key(&self, name: &str) -> Result<PrivateKeyDer<'static>> {
        let path = self.file(name);
        check_private(&path)?;
        PrivateKeyDer::from_pem_file(&path)
            .cert(|| format!("cannot read private key {}", path.display()))
    }
    fn roots(&self) -> Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        for cert in self.read_chain("ca.pem")? {
            roots
                .add(cert)
                .cert_msg("the cluster CA certificate ca.pem is not usable")?;
        }
        Ok(Arc::new(roots))
    }
}

/// Refuses a private key that others than its owner may read, as ssh does:
/// whoever reads it can act as this node or client.
fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .cert(|| format!("cannot read private key {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(NetError::Certificate(format!(
                "private key {} is readable by others (mode {mode:04o}); a key must be private to its owner: run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Writes `text` to `path`, which must not exist yet; a key (`private`) is
/// created readable and writable by its owner only (0600).
fn write_new(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .cert(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .cert(|| format!("cannot write {}", path.display()))
}

/// Makes a cluster CA and, signed by it, a certificate for each role: a
/// node, an admin and a client (see [`crate::access::Role`]). Refuses to
/// overwrite an existing CA. The directory is private to its owner (0700)
/// and so is every key (0600).
pub fn cluster_init(dir: &Path, hosts: &[String]) -> Result<Vec<PathBuf>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    if dir.join("ca.pem").exists() {
        return Err(NetError::Invalid(format!(
            "{} already holds a cluster CA (ca.pem); remove the directory to make a new cluster",
            dir.display()
        )));
    }
    private_dir(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Weir cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);
    let mut written = Vec::new();
    for (name, text, private) in [
        ("ca.pem", ca_cert.pem(), false),
        ("ca.key", ca_key.serialize_pem(), true),
    ] {
        let path = dir.join(name);
        write_new(&path, &text, private)?;
        written.push(path);
    }
    for (name, role) in [
        ("node", Role::Node),
        ("admin", Role::Admin),
        ("client", Role::Client),
    ] {
        written.extend(issue_with(&issuer, dir, name, role, hosts)?);
    }
    Ok(written)
}

/// Issues one more certificate signed by the cluster CA in `ca_dir`: `name`
/// with `role`, written to `out` as `NAME.pem` and `NAME.key` (with a copy
/// of `ca.pem`, so `out` is a certificate directory of its own).
pub fn issue(
    ca_dir: &Path,
    out: &Path,
    name: &str,
    role: Role,
    hosts: &[String],
) -> Result<Vec<PathBuf>> {
    let certs = CertDir::new(ca_dir);
    let ca_pem = std::fs::read_to_string(certs.file("ca.pem")).cert(|| {
        format!(
            "cannot read the cluster CA {} (make one with `weir cluster init`)",
            certs.file("ca.pem").display()
        )
    })?;
    let key_path = certs.file("ca.key");
    check_private(&key_path)?;
    let ca_key = std::fs::read_to_string(&key_path)
        .cert(|| format!("cannot read the CA's key {}", key_path.display()))?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key)
        .cert(|| format!("{} is not a private key", key_path.display()))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .cert(|| format!("{} is not a CA certificate", certs.file("ca.pem").display()))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(NetError::Invalid(format!(
            "certificate name `{name}`: use letters, digits, `-` and `_`"
        )));
    }
    private_dir(out)?;
    let mut written = Vec::new();
    let ca_copy = out.join("ca.pem");
    if !ca_copy.exists() {
        write_new(&ca_copy, &ca_pem, false)?;
        written.push(ca_copy);
    }
    written.extend(issue_with(&issuer, out, name, role, hosts)?);
    Ok(written)
}

/// Makes `dir` (if needed) readable by its owner only.
fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).cert(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .cert(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// Writes `NAME.pem` and `NAME.key` for a certificate with `role`, signed by `issuer`.
fn issue_with(
    issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>,
    dir: &Path,
    name: &str,
    role: Role,
    hosts: &[String],
) -> Result<Vec<PathBuf>> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let (usages, sans) = match role {
        // A node answers as a server to clients and other nodes.
        Role::Node => {
            let mut names = vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()];
            names.extend(hosts.iter().cloned());
            (
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                names,
            )
        }
        Role::Admin | Role::Client => (
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec![format!("weir-{name}")],
        ),
    };
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("weir {name}"));
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.unit());
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer)?;
    let (pem, key_file) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    write_new(&pem, &cert.pem(), false)?;
    write_new(&key_file, &key.serialize_pem(), true)?;
    Ok(vec![pem, key_file])
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Idle timeout and keep-alives, the same on both ends.
fn transport() -> Result<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into()?));
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    Ok(Arc::new(transport))
}

/// The QUIC server configuration of a node: its certificate, and client
/// certificates required from the cluster CA.
pub fn server_config(certs: &CertDir) -> Result<quinn::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(certs.roots()?, provider())
        .build()
        .cert_msg("cannot build the client certificate verifier")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.read_chain("node.pem")?, certs.read_key("node.key")?)
        .cert_msg("node.pem and node.key do not form a usable certificate")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport()?);
    Ok(config)
}

/// The node's endpoint configuration. Its stateless-reset key is derived
/// from the node's private key, so a node restarted on its address answers
/// packets of connections it had before the restart with a stateless reset:
/// their clients learn at once that the connection is gone, and reconnect,
/// instead of waiting for the idle timeout.
pub fn endpoint_config(certs: &CertDir) -> Result<quinn::EndpointConfig> {
    use sha2::Digest;
    let path = certs.file("node.key");
    check_private(&path)?;
    let key =
        std::fs::read(&path).cert(|| format!("cannot read private key {}", path.display()))?;
    let mut digest = sha2::Sha256::new();
    digest.update(b"weir stateless reset key\0");
    digest.update(&key);
    let secret = digest.finalize();
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    // Connection ids the restarted node still recognises as its own (it
    // drops packets whose id it did not issue, without a reset).
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&secret[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}

/// The QUIC client configuration: the cluster CA, and the client certificate
/// `client.pem`/`client.key`.
pub fn client_config(certs: &CertDir) -> Result<quinn::ClientConfig> {
    let identity = certs.identity();
    let (cert, key) = (format!("{identity}.pem"), format!("{identity}.key"));
    let (cert, key) = (cert.as_str(), key.as_str());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(certs.roots()?)
        .with_client_auth_cert(certs.read_chain(cert)?, certs.read_key(key)?)
        .cert(|| format!("{cert} and {key} do not form a usable certificate"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport()?);
    Ok(config)
}

/// A request to a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Is the node up?
    Ping,
    /// Create an ingest stream.
    CreateStream {
        /// Its name.
        name: String,
        /// Its columns.
        columns: Vec<ColumnSpec>,
        /// The event-time column.
        time: String,
        /// The end-time column.
        end_time: Option<String>,
    },
    /// List streams.
    ListStreams,
    /// Append JSONL events (the body follows) to a stream.
    Ingest {
        /// The stream.
        stream: String,
        /// What to call the body in error messages (the client's file name).
        origin: String,
        /// Who sends it: with `sequence`, makes the request idempotent. The
        /// node stores a producer's request only if its sequence is above
        /// every one it stored for that producer; a retry is answered with
        /// the first answer.
        #[serde(default)]
        producer: Option<String>,
        /// The request's number among its producer's, increasing.
        #[serde(default)]
        sequence: u64,
    },
    /// Close an ingest stream: its input ended (appends the end CTI).
    CloseStream {
        /// The stream.
        stream: String,
    },
    /// Submit a job; the body is its components' bytes, one after another.
    SubmitJob {
        /// The job file's absolute path (anchors its relative paths).
        path: std::path::PathBuf,
        /// The job file's text.
        text: String,
        /// Each component's resolved path and length, in body order.
        modules: Vec<(std::path::PathBuf, u64)>,
        /// The rVertices a script's keyed stages run as, unless it sets its own.
        parallelism: u32,
    },
    /// The status of one job, or of all.
    JobStatus {
        /// The job.
        name: Option<String>,
        /// This node's vertices only (a member asking another); otherwise a
        /// member of a cluster answers for every member.
        #[serde(default)]
        local: bool,
    },
    /// End a job's followed-file source at the file's end.
    EndSource {
        /// The job.
        job: String,
        /// The source.
        source: String,
    },
    /// Stop and forget a job.
    CancelJob {
        /// The job.
        name: String,
    },
    /// Deploy a new module version (the body) to a stage of a running job.
    DeployUdf {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// The component's file name (for messages).
        origin: String,
        /// Shadow the new version on the stage's last N input rows first.
        shadow: Option<u64>,
    },
    /// Run a candidate module version (the body) next to a stage's running
    /// one over the input it saw, from its state at a position, and report
    /// the output rows that differ. Changes nothing.
    ReplayUdf {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// The component's file name (for messages).
        origin: String,
        /// The first input seq (default: the stage's latest checkpoint).
        from: Option<u64>,
        /// One past the last input seq (default: what the input holds).
        to: Option<u64>,
    },
    /// The member deploying a module (the body) with a shadow run to a
    /// stage of a job the cluster runs asks the member running one of the
    /// stage's copies to run the module next to the copy's version on the
    /// copy's last `rows` input rows (members only): answered with
    /// [`Response::Shadowed`]. Changes nothing.
    ShadowUdf {
        /// The job.
        job: String,
        /// The copy.
        copy: String,
        /// The component's file name (for messages).
        origin: String,
        /// Input rows to run on.
        rows: u64,
    },
    /// What a stage's UDF logged and printed lately, with the module version
    /// and input position of each call.
    UdfLogs {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// Keep sending lines as they come.
        follow: bool,
    },
    /// Return a stage to an earlier module version.
    RollbackUdf {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// A version (prefix) from the stage's history; the previous one when absent.
        to: Option<String>,
    },
    /// Add a runtime filter to a stage of a running job.
    FilterAdd {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// The filter (an SQL condition on the stage's input columns).
        expr: String,
    },
    /// Remove a runtime filter from a stage of a running job.
    FilterRemove {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
        /// The filter, as added.
        expr: String,
    },
    /// A stage's module versions and where each took effect.
    UdfHistory {
        /// The job.
        job: String,
        /// The stage.
        stage: String,
    },
    /// Membership and the coordinator (nodes only, but `status`).
    Cluster(crate::cluster::ClusterRequest),
    /// Read a stream from a position.
    Read {
        /// The stream.
        stream: String,
        /// The first seq.
        from: u64,
        /// Keep reading as entries arrive.
        follow: bool,
    },
    /// A member's vertex reads a stream written on this member: entries
    /// from `from` on as binary batches ([`crate::frames`]), and back its
    /// acknowledgements (members only).
    Pull {
        /// The job stream's full name.
        stream: String,
        /// The first seq the reader lacks.
        from: u64,
        /// Who reads (`member/vertex`), for the writer's collection.
        reader: String,
        /// A vertex reading the copy writes again output that a reader of
        /// its own already copied further: until it has written that far,
        /// the stream's writer makes no change (a deploy, rollback or
        /// filter) past what it wrote, so what the vertex writes again is
        /// what was copied. The reader pulls again without it once the
        /// vertex has caught up.
        #[serde(default)]
        behind: bool,
    },
    /// A member's copy of a job stream pulled from another member tells a
    /// member running a replica of the stream's writer how far it holds
    /// the stream (members only): that member keeps what the copy lacks,
    /// in case the writer moves there. Answered [`Response::Ok`].
    Hold {
        /// The job stream's full name.
        stream: String,
        /// The copy's reader name, as it pulls under.
        reader: String,
        /// The first seq the copy still needs.
        seq: u64,
    },
    /// A module's bytes by version (content address), for a member that
    /// runs a vertex of it (members only): answered with
    /// [`Response::Module`] and the bytes.
    Module {
        /// The module version (the hex SHA-256 of its bytes).
        version: String,
    },
    /// The member backing up a vertex of a job asks for the vertex's latest
    /// snapshot (members only): answered with [`Response::Backup`] and the
    /// snapshot's bytes.
    Backup {
        /// The job.
        job: String,
        /// Its incarnation.
        id: u64,
        /// The vertex.
        vertex: String,
        /// The input positions of the snapshot the backup stored last, if
        /// any: the member that runs the vertex keeps its inputs from there.
        have: Option<Vec<u64>>,
        /// The number of that snapshot, when the backup holds its keyed
        /// state: the answer carries only the keys changed since, when the
        /// member knows them.
        since: Option<u64>,
        /// The asking member: the vertex's inputs are kept from the lowest
        /// positions of the snapshots its backups hold (the previous one's
        /// too, while a new one is not ready).
        #[serde(default)]
        member: Option<u64>,
    },
    /// The primary of an ingest stream writes entries to another holder of
    /// it (members only); the body is one batch frame ([`crate::frames`]).
    /// The holder writes them at their seqs with `records`, in one
    /// transaction, and answers [`Response::Replicated`] once they are
    /// durable; a holder that lacks entries before the batch writes
    /// nothing and answers where it stands.
    Replicate {
        /// The stream.
        stream: String,
        /// The member that sends it, the stream's primary.
        primary: u64,
        /// Metadata records written with the entries: the producers'
        /// records of idempotent ingest, key → JSON value.
        records: Vec<(String, String)>,
        /// Metadata records deleted with them (producers that left the window).
        #[serde(default)]
        evicted: Vec<String>,
    },
}

impl Request {
    /// What it asks for, in words (for refusals).
    pub fn describe(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::CreateStream { .. } => "create streams",
            Request::ListStreams => "list streams",
            Request::Ingest { .. } => "ingest",
            Request::CloseStream { .. } => "close streams",
            Request::SubmitJob { .. } => "submit jobs",
            Request::JobStatus { .. } => "read job status",
            Request::EndSource { .. } => "end job sources",
            Request::CancelJob { .. } => "cancel jobs",
            Request::DeployUdf { .. } => "deploy UDFs",
            Request::ReplayUdf { .. } => "replay UDFs",
            Request::ShadowUdf { .. } => "shadow a copy's UDF",
            Request::UdfLogs { .. } => "read UDF logs",
            Request::RollbackUdf { .. } => "roll UDFs back",
            Request::FilterAdd { .. } | Request::FilterRemove { .. } => "change runtime filters",
            Request::UdfHistory { .. } => "read UDF history",
            Request::Read { .. } => "read streams",
            Request::Pull { .. } => "pull a job stream for a member's vertex",
            Request::Hold { .. } => "hold a job stream for a member's vertex",
            Request::Module { .. } => "fetch a module for a member's vertex",
            Request::Backup { .. } => "back up a member's vertex",
            Request::Replicate { .. } => "hold a copy of an ingest stream",
            Request::Cluster(crate::cluster::ClusterRequest::Status) => "read the cluster status",
            Request::Cluster(_) => "take part in the cluster",
        }
    }
}

/// One stream in a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Name.
    pub name: String,
    /// Columns as `name: type`.
    pub columns: String,
    /// Next seq.
    pub next: u64,
    /// Lowest seq still stored.
    pub low: u64,
}

/// A node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok {
        /// What happened.
        message: String,
    },
    /// The request failed.
    Error {
        /// Why, naming what and where.
        message: String,
    },
    /// Streams.
    Streams(Vec<StreamSummary>),
    /// Events ingested and durable.
    Ingested {
        /// Events stored.
        events: u64,
        /// First seq written.
        first_seq: u64,
        /// Entries written.
        entries: u64,
        /// An earlier request of the same producer and sequence stored
        /// them; this one stored nothing.
        #[serde(default)]
        duplicate: bool,
    },
    /// Entries read: one JSON line per event (`_seq` first) and per CTI.
    Lines(String),
    /// No more entries (end of a non-following read).
    End,
    /// Jobs' status.
    Jobs(Vec<crate::status::JobStatus>),
    /// A deploy or rollback.
    Patched(crate::status::PatchReport),
    /// A stage's history.
    History(Vec<crate::status::HistoryEntry>),
    /// A replay of a candidate version.
    Replayed(crate::status::ReplayReport),
    /// What a shadow run on one copy found.
    Shadowed(Option<crate::status::ShadowReport>),
    /// A cluster answer.
    Cluster(crate::cluster::ClusterResponse),
    /// A module's bytes follow (this many).
    Module {
        /// Their length.
        len: u64,
    },
    /// A vertex's snapshot follows (this many bytes).
    Backup {
        /// Their length.
        len: u64,
    },
    /// A holder of an ingest stream has every entry below `next` durable.
    Replicated {
        /// The first seq it lacks.
        next: u64,
    },
}

/// Writes one length-prefixed JSON message.
pub async fn write_msg<T: Serialize>(send: &mut quinn::SendStream, msg: &T) -> Result<()> {
    let bytes = serde_json::to_vec(msg)?;
    send.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    send.write_all(&bytes).await?;
    Ok(())
}

/// Reads one length-prefixed JSON message; `None` at the end of the stream.
pub async fn read_msg<T: for<'de> Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>> {
    let mut buf = Vec::new();
    match read_frame(recv, &mut buf, MAX_FRAME, "a message").await? {
        Some(()) => Ok(Some(serde_json::from_slice(&buf)?)),
        None => Ok(None),
    }
}

/// Reads one frame (a `u32` little-endian length, then that many bytes)
/// into `buf`; `None` when the writer finished the stream before a frame.
/// A length over `limit` is refused before anything is allocated; `what`
/// names the frame in that error.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
    what: &str,
) -> Result<Option<()>> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(NetError::Invalid(format!(
            "{what} of {len} bytes is larger than the limit of {limit}"
        )));
    }
    buf.clear();
    buf.resize(len, 0);
    recv.read_exact(buf).await?;
    Ok(Some(()))
}
