//! Node traffic: QUIC with mutual TLS (quinn, rustls), certificates from a
//! cluster CA made by `weir cluster init` (rcgen), and the request protocol.
//!
//! Every request is one bidirectional QUIC stream: the client sends a
//! length-prefixed JSON [`Request`], then (for ingest) the body, and finishes
//! its side; the node answers with length-prefixed JSON [`Response`]s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::schema::ColumnSpec;

/// The ALPN protocol name of Weir's node protocol.
pub const ALPN: &[u8] = b"weir/1";
/// The name node certificates are issued for, and clients check.
pub const SERVER_NAME: &str = "localhost";
/// A connection whose peer is silent this long is dead (keep-alives every 5 s).
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
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
}

impl CertDir {
    /// The directory `dir`.
    pub fn new(dir: &Path) -> CertDir {
        CertDir {
            dir: dir.to_path_buf(),
        }
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn read_chain(&self, name: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let path = self.file(name);
        let certs: Vec<_> = CertificateDer::pem_file_iter(&path)
            .with_context(|| {
                format!(
                    "cannot read certificate {} (make one with `weir cluster init --dir {}`)",
                    path.display(),
                    self.dir.display()
                )
            })?
            .collect::<Result<_, _>>()
            .with_context(|| format!("certificate {} is not valid PEM", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no certificate", path.display());
        }
        Ok(certs)
    }
    fn read_key(&self, name: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
        let path = self.file(name);
        PrivateKeyDer::from_pem_file(&path)
            .with_context(|| format!("cannot read private key {}", path.display()))
    }
    fn roots(&self) -> anyhow::Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        for cert in self.read_chain("ca.pem")? {
            roots
                .add(cert)
                .context("the cluster CA certificate ca.pem is not usable")?;
        }
        Ok(Arc::new(roots))
    }
}

/// Makes a cluster CA and, signed by it, a node certificate and a client
/// certificate in `dir`. Refuses to overwrite an existing CA.
pub fn cluster_init(dir: &Path, hosts: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    if dir.join("ca.pem").exists() {
        bail!(
            "{} already holds a cluster CA (ca.pem); remove the directory to make a new cluster",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Weir cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);
    let mut written = Vec::new();
    let mut write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write("ca.pem", ca_cert.pem())?;
    write("ca.key", ca_key.serialize_pem())?;
    let mut names = vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    for (file, common_name, usages, sans) in [
        (
            "node",
            "weir node",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            names.clone(),
        ),
        (
            "client",
            "weir client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            vec!["weir-client".to_string()],
        ),
    ] {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &issuer)?;
        write(&format!("{file}.pem"), cert.pem())?;
        write(&format!("{file}.key"), key.serialize_pem())?;
    }
    Ok(written)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Idle timeout and keep-alives, the same on both ends.
fn transport() -> anyhow::Result<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into()?));
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    Ok(Arc::new(transport))
}

/// The QUIC server configuration of a node: its certificate, and client
/// certificates required from the cluster CA.
pub fn server_config(certs: &CertDir) -> anyhow::Result<quinn::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(certs.roots()?, provider())
        .build()
        .context("cannot build the client certificate verifier")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.read_chain("node.pem")?, certs.read_key("node.key")?)
        .context("node.pem and node.key do not form a usable certificate")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport()?);
    Ok(config)
}

/// The QUIC client configuration: the cluster CA, and the client certificate
/// `client.pem`/`client.key`.
pub fn client_config(certs: &CertDir) -> anyhow::Result<quinn::ClientConfig> {
    let (cert, key) = ("client.pem", "client.key");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(certs.roots()?)
        .with_client_auth_cert(certs.read_chain(cert)?, certs.read_key(key)?)
        .with_context(|| format!("{cert} and {key} do not form a usable certificate"))?;
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
    },
    /// The status of one job, or of all.
    JobStatus {
        /// The job.
        name: Option<String>,
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
    /// Read a stream from a position.
    Read {
        /// The stream.
        stream: String,
        /// The first seq.
        from: u64,
        /// Keep reading as entries arrive.
        follow: bool,
    },
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
    },
    /// Entries read: one JSON line per event (`_seq` first) and per CTI.
    Lines(String),
    /// No more entries (end of a non-following read).
    End,
    /// Jobs' status.
    Jobs(Vec<crate::jobs::JobStatus>),
    /// A deploy or rollback.
    Patched(crate::jobs::PatchReport),
    /// A stage's history.
    History(Vec<crate::jobs::HistoryEntry>),
}

/// Writes one length-prefixed JSON message.
pub async fn write_msg<T: Serialize>(send: &mut quinn::SendStream, msg: &T) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(msg)?;
    send.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    send.write_all(&bytes).await?;
    Ok(())
}

/// Reads one length-prefixed JSON message; `None` at the end of the stream.
pub async fn read_msg<T: for<'de> Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
) -> anyhow::Result<Option<T>> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("a message of {len} bytes is larger than the limit of {MAX_FRAME}");
    }
    let mut buf = vec![0; len];
    recv.read_exact(&mut buf).await?;
    Ok(Some(serde_json::from_slice(&buf)?))
}

/// A client connection to a node.
#[derive(Debug)]
pub struct Client {
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
}

impl Client {
    /// Connects to the node at `addr` with the client certificate in `certs`.
    pub async fn connect(addr: SocketAddr, certs: &CertDir) -> anyhow::Result<Client> {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(client_config(certs)?);
        let connecting = endpoint.connect(addr, SERVER_NAME)?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no node answered at {addr} within {} s (is `weir node start` running there?)",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("cannot connect to the node at {addr}"))?;
        let client = Client {
            connection,
            endpoint,
        };
        // With TLS 1.3 the node checks the client certificate after the
        // handshake completes here, so one round trip tells whether it was accepted.
        tokio::time::timeout(CONNECT_TIMEOUT, client.call(&Request::Ping, None))
            .await
            .map_err(|_| anyhow::anyhow!("the node at {addr} did not answer"))?
            .with_context(|| {
                format!(
                    "the node at {addr} refused this client (is {} signed by the cluster's CA?)",
                    certs.file("client.pem").display()
                )
            })?;
        Ok(client)
    }

    /// Sends `request` (and `body`, if any); returns the stream's receive side
    /// for the answers.
    pub async fn request(
        &self,
        request: &Request,
        body: Option<&[u8]>,
    ) -> anyhow::Result<quinn::RecvStream> {
        let (mut send, recv) = self.connection.open_bi().await?;
        write_msg(&mut send, request).await?;
        if let Some(body) = body {
            send.write_all(body).await?;
        }
        send.finish()?;
        Ok(recv)
    }

    /// Sends `request` and returns the one answer.
    pub async fn call(&self, request: &Request, body: Option<&[u8]>) -> anyhow::Result<Response> {
        let mut recv = self.request(request, body).await?;
        match read_msg::<Response>(&mut recv).await? {
            Some(Response::Error { message }) => bail!("{message}"),
            Some(r) => Ok(r),
            None => bail!("the node closed the request without answering"),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
