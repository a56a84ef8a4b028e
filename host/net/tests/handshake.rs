//! Mutual TLS at the QUIC handshake, against a real endpoint on loopback
//! with the node's server configuration: a client of the cluster's CA is
//! answered; one with another CA's certificate, an expired certificate or
//! none is refused, and a client refuses a node whose certificate expired.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use weir_net::protocol::{
    ALPN, CertDir, Client, Request, Response, SERVER_NAME, client_config, cluster_init, read_msg,
    server_config, write_msg,
};

/// A node endpoint with the certificates in `certs` that answers every
/// request with `Ok`.
fn serve(certs: &CertDir) -> (quinn::Endpoint, SocketAddr) {
    let endpoint =
        quinn::Endpoint::server(server_config(certs).expect("server config"), loopback())
            .expect("endpoint");
    let addr = endpoint.local_addr().expect("address");
    let server = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    if let Ok(Some(_)) = read_msg::<Request>(&mut recv).await {
                        let answer = Response::Ok {
                            message: "answered".into(),
                        };
                        let _ = write_msg(&mut send, &answer).await;
                        let _ = send.finish();
                    }
                }
            });
        }
    });
    (endpoint, addr)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// Writes `name.pem` and `name.key` in `dir`: a certificate signed by the
/// CA in `ca`, for the node's server name and client use, valid only in
/// 2020 (long expired), with a copy of the CA.
fn expired(ca: &Path, dir: &Path, name: &str) {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, date_time_ymd,
    };
    let ca_pem = std::fs::read_to_string(ca.join("ca.pem")).expect("ca.pem");
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ca.join("ca.key")).expect("ca.key"))
        .expect("the CA key");
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).expect("the CA");
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("weir {name}"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2020, 12, 31);
    let cert = params.signed_by(&key, &issuer).expect("signed");
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), ca_pem).expect("write");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Whether a client with `config` gets an answer from the node at `addr`
/// (the server refuses a client certificate only after the client's side
/// of the handshake, so the refusal shows on the first request).
async fn answered(config: quinn::ClientConfig, addr: SocketAddr) -> bool {
    let mut endpoint = quinn::Endpoint::client(loopback()).expect("client endpoint");
    endpoint.set_default_client_config(config);
    let attempt = async {
        let connection = endpoint.connect(addr, SERVER_NAME).ok()?.await.ok()?;
        let (mut send, mut recv) = connection.open_bi().await.ok()?;
        write_msg(&mut send, &Request::Ping).await.ok()?;
        send.finish().ok()?;
        read_msg::<Response>(&mut recv).await.ok()?
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten();
    endpoint.close(0u32.into(), b"done");
    matches!(answer, Some(Response::Ok { .. }))
}

#[tokio::test]
async fn only_a_valid_certificate_of_the_clusters_ca_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    cluster_init(&ours, &[]).expect("our cluster");
    cluster_init(&theirs, &[]).expect("another cluster");
    let (node, addr) = serve(&CertDir::new(&ours));

    // A client of the cluster's CA is answered, through the CLI's client too.
    let config = client_config(&CertDir::new(&ours)).expect("client config");
    assert!(answered(config, addr).await, "a valid client is answered");
    let client = Client::connect(addr, &CertDir::new(&ours))
        .await
        .expect("connects");
    assert!(matches!(
        client.call(&Request::Ping, None).await,
        Ok(Response::Ok { .. })
    ));
    client.close().await;

    // Another cluster's client: its certificate is not of this CA (and the
    // node's is not of its CA either).
    let config = client_config(&CertDir::new(&theirs)).expect("client config");
    assert!(!answered(config, addr).await, "another CA's client refused");

    // A certificate of the right CA that expired.
    let stale = dir.path().join("stale");
    expired(&ours, &stale, "client");
    let config = client_config(&CertDir::new(&stale)).expect("client config");
    assert!(!answered(config, addr).await, "an expired client refused");

    // No client certificate at all.
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ours.join("ca.pem")).expect("ca.pem");
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("a certificate")).expect("a root");
        }
        roots
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    assert!(
        !answered(config, addr).await,
        "a client without a certificate refused"
    );
    node.close(0u32.into(), b"done");

    // A node whose certificate expired: the client refuses it.
    let old_node = dir.path().join("old-node");
    expired(&ours, &old_node, "node");
    let (node, addr) = serve(&CertDir::new(&old_node));
    let config = client_config(&CertDir::new(&ours)).expect("client config");
    assert!(!answered(config, addr).await, "an expired node refused");
    let refused = Client::connect(addr, &CertDir::new(&ours)).await;
    let message = match refused {
        Ok(client) => client
            .call(&Request::Ping, None)
            .await
            .expect_err("an expired node is not talked to")
            .to_string(),
        Err(e) => e.to_string(),
    };
    assert!(message.to_lowercase().contains("expired"), "{message}");
    node.close(0u32.into(), b"done");
}
