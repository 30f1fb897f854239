//! The HTTP/1.1 exchanges of the Pairing client: one request per connection, over hyper's
//! connection-level client, TLS by rustls for `https`, the proxy of the environment
//! (`web/proxy.rs`), the whole exchange within a timeout, the answer's body read up to a limit.
//!
//! What reqwest did for the client, without its connection pool, middleware and redirect
//! machinery (about 400 KB of the binary): Pairing is called a few times a day, never
//! redirects, and the client did not follow redirects anyway.

mod proxy;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Position, Url};

/// A connection to the server: TCP, possibly TLS, possibly through a proxy.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type BoxStream = Box<dyn Stream>;

/// Why an exchange failed before an answer was read in full.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the URL has no host")]
    NoHost,
    #[error("couldn't connect to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("TLS handshake with {host} failed")]
    Tls { host: String, source: io::Error },
    #[error("the proxy {proxy} refused the tunnel: {status}")]
    ProxyRefused { proxy: String, status: String },
    #[error("the proxy {proxy} uses an unsupported scheme")]
    ProxyScheme { proxy: String },
    #[error("HTTP exchange failed")]
    Http {
        #[source]
        source: hyper::Error,
    },
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body is larger than the limit given.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// A request's parts besides the URL and method.
pub struct Outgoing<'a> {
    /// `Authorization` (marked sensitive).
    pub authorization: HeaderValue,
    pub accept: &'static str,
    /// A JSON body.
    pub json: Option<Vec<u8>>,
    /// The largest body accepted in the answer.
    pub max_body: usize,
    pub url: &'a Url,
}

/// An HTTP client: the TLS configuration for `https`, the time one exchange may take.
#[derive(Clone)]
pub struct Client {
    tls: Arc<ClientConfig>,
    timeout: Duration,
    user_agent: HeaderValue,
    /// The environment's proxies, read once like reqwest did.
    proxies: Arc<Matcher>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(tls: ClientConfig, timeout: Duration, user_agent: &'static str) -> Client {
        Client {
            tls: Arc::new(tls),
            timeout,
            user_agent: HeaderValue::from_static(user_agent),
            proxies: Arc::new(Matcher::from_system()),
        }
    }

    /// The same client with other proxies than the environment's.
    #[cfg(test)]
    fn with_proxies(self, proxies: Matcher) -> Client {
        Client {
            proxies: Arc::new(proxies),
            ..self
        }
    }

    /// Sends one request and reads the whole answer: its status and body.
    pub async fn send(
        &self,
        method: Method,
        request: Outgoing<'_>,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        tokio::time::timeout(self.timeout, self.exchange(method, request))
            .await
            .unwrap_or(Err(HttpError::Timeout(self.timeout)))
    }

    async fn exchange(
        &self,
        method: Method,
        outgoing: Outgoing<'_>,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        let url = outgoing.url;
        let host = url.host().ok_or(HttpError::NoHost)?;
        let port = url.port_or_known_default().ok_or(HttpError::NoHost)?;
        let https = url.scheme() == "https";
        let proxy = proxy::for_url(&self.proxies, url);
        let (stream, absolute_form) = match &proxy {
            Some(proxy) if https => (proxy.tunnel(&self.tls, &host, port).await?, false),
            Some(proxy) => (proxy.connect(&self.tls).await?, true),
            None => (connect(&host, port).await?, false),
        };
        let stream = if https {
            tls(&self.tls, &host, stream).await?
        } else {
            stream
        };

        let target = if absolute_form {
            &url[..Position::AfterQuery]
        } else {
            &url[Position::BeforePath..Position::AfterQuery]
        };
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(HOST, &url[Position::BeforeHost..Position::AfterPort])
            .header(USER_AGENT, self.user_agent.clone())
            .header(http::header::AUTHORIZATION, outgoing.authorization)
            .header(http::header::ACCEPT, outgoing.accept);
        if let Some(proxy) = proxy.as_ref().filter(|_| absolute_form)
            && let Some(auth) = proxy.authorization()
        {
            request = request.header(http::header::PROXY_AUTHORIZATION, auth);
        }
        let body = match outgoing.json {
            Some(json) => {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .header(CONTENT_LENGTH, json.len());
                Bytes::from(json)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|_| HttpError::NoHost)?;
        exchange(stream, request, outgoing.max_body).await
    }
}

/// Sends `request` on `stream` and reads the answer, at most `max_body` bytes of body.
async fn exchange(
    stream: BoxStream,
    request: Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(StatusCode, Vec<u8>), HttpError> {
    let http = |source| HttpError::Http { source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(http)?.into_data() {
                if bytes.len() + data.len() > max_body {
                    return Err(HttpError::TooLarge(max_body));
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok((status, bytes))
    };
    tokio::pin!(answer, connection);
    // The connection task reads and writes; the answer is complete once its body ended.
    let closed = tokio::select! {
        biased;
        answer = &mut answer => return answer,
        closed = &mut connection => closed,
    };
    closed.map_err(http)?;
    answer.await
}

/// A TCP connection to `host:port` (each address of a name in turn).
async fn connect(host: &Host<&str>, port: u16) -> Result<BoxStream, HttpError> {
    let connected = match *host {
        Host::Domain(name) => TcpStream::connect((name, port)).await,
        Host::Ipv4(ip) => TcpStream::connect(SocketAddr::from((ip, port))).await,
        Host::Ipv6(ip) => TcpStream::connect(SocketAddr::from((ip, port))).await,
    };
    let stream = connected.map_err(|source| HttpError::Connect {
        host: host.to_string(),
        port,
        source,
    })?;
    // Requests are small and sent at once: don't wait for an ACK before the body.
    let _ = stream.set_nodelay(true);
    Ok(Box::new(stream))
}

/// TLS over `stream` to `host`, checked against `tls`'s trust anchors.
async fn tls(
    tls: &Arc<ClientConfig>,
    host: &Host<&str>,
    stream: BoxStream,
) -> Result<BoxStream, HttpError> {
    let failed = |source| HttpError::Tls {
        host: host.to_string(),
        source,
    };
    let name = match *host {
        Host::Domain(name) => ServerName::try_from(name.to_owned())
            .map_err(|error| failed(io::Error::new(io::ErrorKind::InvalidInput, error)))?,
        Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::from(ip).into()),
        Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::from(ip).into()),
    };
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = connector.connect(name, stream).await.map_err(failed)?;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests;
