//! Proxies, against a stand-in proxy on the loopback that checks what it is asked and answers
//! a canned response. The direct path is covered by the Pairing client's tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A proxy that takes one connection, hands its request head (up to the blank line) to the
/// test and answers `answer`; then, for a tunnel, echoes what follows.
async fn stand_in(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://u:p@{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        stream.write_all(answer.as_bytes()).await.unwrap();
        let mut echo = [0; 4];
        if let Ok(n) = stream.read(&mut echo).await {
            let _ = stream.write_all(&echo[..n]).await;
        }
        String::from_utf8(head).unwrap()
    });
    (address, task)
}

fn client(proxy: &str) -> Client {
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    Client::new(tls, Duration::from_secs(5), "test")
        .with_proxies(Matcher::builder().all(proxy.to_owned()).build())
}

#[tokio::test]
async fn http_requests_go_to_the_proxy_in_absolute_form_with_its_credentials() {
    let (proxy, head) = stand_in("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let url = Url::parse("http://pairing.invalid:1234/v1/x?y=1").unwrap();
    let request = Outgoing {
        authorization: HeaderValue::from_static("Bearer t"),
        accept: "application/json",
        json: None,
        max_body: 10,
        url: &url,
    };
    let (status, body) = client(&proxy).send(Method::GET, request).await.unwrap();
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"ok"[..]));
    let head = head.await.unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get http://pairing.invalid:1234/v1/x?y=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nproxy-authorization: basic dtpw\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nhost: pairing.invalid:1234\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let (proxy, head) = stand_in("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let proxy = for_url(&proxy);
    let mut tunnel = proxy
        .tunnel(&client_tls(), &Host::Domain("pairing.invalid"), 443)
        .await
        .unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    let mut echo = [0; 4];
    tunnel.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    let head = head.await.unwrap();
    assert!(
        head.starts_with("CONNECT pairing.invalid:443 HTTP/1.1\r\nHost: pairing.invalid:443\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authorization: Basic dTpw\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn a_refused_tunnel_is_an_error_naming_the_proxy_without_credentials() {
    let (proxy, _head) = stand_in("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
    let error = match for_url(&proxy)
        .tunnel(&client_tls(), &Host::Domain("pairing.invalid"), 443)
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("the tunnel was opened"),
    };
    let text = error.to_string();
    assert!(text.contains("407 Proxy Authentication Required"), "{text}");
    assert!(!text.contains("u:p"), "{text}");
}

fn for_url(proxy: &str) -> proxy::Proxy {
    let matcher = Matcher::builder().all(proxy.to_owned()).build();
    proxy::for_url(&matcher, &Url::parse("https://pairing.invalid/").unwrap()).unwrap()
}

fn client_tls() -> Arc<ClientConfig> {
    client("http://127.0.0.1:9").tls
}
