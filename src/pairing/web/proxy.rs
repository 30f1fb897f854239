//! The proxy of the environment, as reqwest used it: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`
//! and `NO_PROXY` (or their lowercase forms; `HTTP_PROXY` is ignored in a CGI process), read
//! by hyper-util's matcher, which reqwest itself calls. `https` destinations go through a
//! `CONNECT` tunnel, `http` ones are asked of the proxy in absolute form; `http` and `https`
//! proxies are supported, with basic authentication from the proxy URL.

use std::sync::Arc;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::{Host, Url};

use super::{BoxStream, HttpError, connect, tls};

/// The longest answer to a `CONNECT` read.
const MAX_CONNECT_ANSWER: usize = 8192;

/// The proxy to reach a URL through.
pub(super) struct Proxy {
    uri: Uri,
    authorization: Option<HeaderValue>,
}

/// The proxy `proxies` set for `url`, if any.
pub(super) fn for_url(proxies: &Matcher, url: &Url) -> Option<Proxy> {
    let uri: Uri = url.as_str().parse().ok()?;
    let intercept = proxies.intercept(&uri)?;
    Some(Proxy {
        uri: intercept.uri().clone(),
        authorization: intercept.basic_auth().cloned(),
    })
}

impl Proxy {
    /// `Proxy-Authorization`, when the proxy URL has a user.
    pub(super) fn authorization(&self) -> Option<HeaderValue> {
        self.authorization.clone()
    }

    /// A connection to the proxy itself (TLS for an `https` proxy).
    pub(super) async fn connect(
        &self,
        tls_config: &Arc<ClientConfig>,
    ) -> Result<BoxStream, HttpError> {
        let unsupported = || HttpError::ProxyScheme {
            proxy: self.uri.to_string(),
        };
        let https = match self.uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(unsupported()),
        };
        let host = self.uri.host().ok_or_else(unsupported)?;
        let host = Host::parse(host).map_err(|_| unsupported())?;
        let host = match &host {
            Host::Domain(name) => Host::Domain(name.as_str()),
            Host::Ipv4(ip) => Host::Ipv4(*ip),
            Host::Ipv6(ip) => Host::Ipv6(*ip),
        };
        let port = self.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let stream = connect(&host, port).await?;
        if https {
            tls(tls_config, &host, stream).await
        } else {
            Ok(stream)
        }
    }

    /// A tunnel through the proxy to `host:port` (`CONNECT`).
    pub(super) async fn tunnel(
        &self,
        tls_config: &Arc<ClientConfig>,
        host: &Host<&str>,
        port: u16,
    ) -> Result<BoxStream, HttpError> {
        let mut stream = self.connect(tls_config).await?;
        let failed = |source| HttpError::Connect {
            host: host.to_string(),
            port,
            source,
        };
        let mut request =
            format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
        if let Some(authorization) = &self.authorization {
            request.extend_from_slice(b"Proxy-Authorization: ");
            request.extend_from_slice(authorization.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        stream.write_all(&request).await.map_err(failed)?;

        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_CONNECT_ANSWER {
                return Err(self.refused("answer too long"));
            }
            let mut byte = [0];
            if stream.read(&mut byte).await.map_err(failed)? == 0 {
                return Err(self.refused("connection closed"));
            }
            answer.push(byte[0]);
        }
        let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
        let status_line = String::from_utf8_lossy(status_line);
        match status_line.split(' ').nth(1) {
            Some(code) if code.len() == 3 && code.starts_with('2') => Ok(stream),
            _ => Err(self.refused(&status_line)),
        }
    }

    fn refused(&self, status: &str) -> HttpError {
        HttpError::ProxyRefused {
            proxy: self.uri.to_string(),
            status: status.to_owned(),
        }
    }
}
