//! A client's connection to a node: one QUIC connection, one
//! bidirectional stream per request.

use std::net::SocketAddr;

use super::*;

/// A client connection to a node.
#[derive(Debug, Clone)]
pub struct Client {
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
}

impl Client {
    /// Connects to the node at `addr` with the client certificate in `certs`.
    pub async fn connect(addr: SocketAddr, certs: &CertDir) -> Result<Client> {
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
                NetError::Transport(format!(
                    "no node answered at {addr} within {} s (is `weir node start` running there?)",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .net(|| format!("cannot connect to the node at {addr}"))?;
        let client = Client {
            connection,
            endpoint,
        };
        // With TLS 1.3 the node checks the client certificate after the
        // handshake completes here, so one round trip tells whether it was accepted.
        tokio::time::timeout(CONNECT_TIMEOUT, client.call(&Request::Ping, None))
            .await
            .map_err(|_| NetError::Transport(format!("the node at {addr} did not answer")))?
            .net(|| {
                format!(
                    "the node at {addr} refused this client (is {} signed by the cluster's CA?)",
                    certs.file(&format!("{}.pem", certs.identity())).display()
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
    ) -> Result<quinn::RecvStream> {
        let (mut send, recv) = self.connection.open_bi().await?;
        write_msg(&mut send, request).await?;
        if let Some(body) = body {
            send.write_all(body).await?;
        }
        send.finish()?;
        Ok(recv)
    }

    /// Sends `request` and keeps the stream's send side open (a pull's
    /// acknowledgements travel on it).
    pub async fn open(&self, request: &Request) -> Result<(quinn::SendStream, quinn::RecvStream)> {
        let (mut send, recv) = self.connection.open_bi().await?;
        write_msg(&mut send, request).await?;
        Ok((send, recv))
    }

    /// Sends `frame` as one length-prefixed message, whatever it holds (how
    /// protocol tests send what no well-behaved client would).
    pub async fn raw(&self, frame: &[u8]) -> Result<quinn::RecvStream> {
        let (mut send, recv) = self.connection.open_bi().await?;
        send.write_all(&(frame.len() as u32).to_le_bytes()).await?;
        send.write_all(frame).await?;
        send.finish()?;
        Ok(recv)
    }

    /// Sends `request` and returns the one answer.
    pub async fn call(&self, request: &Request, body: Option<&[u8]>) -> Result<Response> {
        match self.answer(request, body).await? {
            Response::Error { message } => Err(NetError::Refused(message)),
            r => Ok(r),
        }
    }

    /// Sends `request` and returns the one answer, a refusal included: an
    /// `Err` means the answer was lost (the connection failed), so the
    /// request may or may not have taken effect.
    pub async fn answer(&self, request: &Request, body: Option<&[u8]>) -> Result<Response> {
        let mut recv = self.request(request, body).await?;
        match read_msg::<Response>(&mut recv).await? {
            Some(r) => Ok(r),
            None => Err(NetError::Transport(
                "the node closed the request without answering".into(),
            )),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
