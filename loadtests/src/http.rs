//! A minimal HTTP/1.1 client on hyper's connection API: one TCP connection per virtual user (no
//! pool, no locks between users), `TCP_NODELAY`, requests pre-built with the `Host` header, and the
//! whole answer body read before a request counts as done.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: `http://host:port[/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for connecting.
    pub addr: String,
    /// The `Host` header.
    pub host: HeaderValue,
    /// Prepended to every request path (empty or `/base`, never ending in `/`).
    pub base_path: String,
    /// The URL as given, without a trailing `/`.
    pub url: String,
    /// `Authorization: Bearer <key>` for every request, when the API requires keys. Marked
    /// sensitive: `Debug` shows `Sensitive`, never the key.
    pub authorization: Option<HeaderValue>,
}

/// An API key (`--api-key` or `CACHEFLOW_API_KEY`); `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// For clap: any non-empty value that can be a header.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("the API key is empty".into());
        }
        if HeaderValue::from_str(value).is_err() {
            return Err("the API key has characters a header cannot carry".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> HeaderValue {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.0)).expect("checked by ApiKey::parse");
        value.set_sensitive(true);
        value
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl Target {
    /// A target whose requests carry `key`, if any.
    pub fn parse_with_key(url: &str, key: Option<&ApiKey>) -> anyhow::Result<Arc<Self>> {
        let mut target = Arc::unwrap_or_clone(Self::parse(url)?);
        target.authorization = key.map(ApiKey::header);
        Ok(Arc::new(target))
    }

    pub fn parse(url: &str) -> anyhow::Result<Arc<Self>> {
        let url = url.trim_end_matches('/');
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid URL {url:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{url}: only http:// is supported, not {other}://"),
            None => bail!("{url}: expected an http://host:port URL"),
        }
        let authority = uri.authority().with_context(|| format!("{url}: no host"))?;
        if authority.as_str().contains('@') {
            bail!("{url}: credentials in the URL are not supported");
        }
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        if uri.query().is_some() {
            bail!("{url}: a base URL has no query");
        }
        Ok(Arc::new(Self {
            addr: format!("{host}:{port}"),
            host: HeaderValue::from_str(authority.as_str())?,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            url: url.to_owned(),
            authorization: None,
        }))
    }

    /// The request target (origin form) of `path`.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }
}

/// One request to make: the scenario's kind of request (`op`, an index into its list of names), a
/// caller-defined `tag` (e.g. the entity number), and the HTTP request itself.
#[derive(Debug, Clone)]
pub struct Planned {
    pub op: usize,
    pub tag: u64,
    pub method: Method,
    /// Path and query, without the base path.
    pub path: String,
    /// Content type and body.
    pub body: Option<(&'static str, Bytes)>,
}

impl Planned {
    pub fn get(op: usize, tag: u64, path: String) -> Self {
        Self {
            op,
            tag,
            method: Method::GET,
            path,
            body: None,
        }
    }

    pub fn request(&self, target: &Target) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(target.path(&self.path))
            .header(HOST, target.host.clone());
        if let Some(authorization) = &target.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let body = match &self.body {
            Some((content_type, body)) => {
                builder = builder.header(CONTENT_TYPE, *content_type);
                body.clone()
            }
            None => Bytes::new(),
        };
        Ok(builder.body(Full::new(body))?)
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `X-Cache` header.
    pub fn x_cache(&self) -> Option<&str> {
        self.headers.get("x-cache").and_then(|v| v.to_str().ok())
    }

    /// The version in the `ETag` header (`"3"` or `W/"3"`).
    pub fn etag_version(&self) -> Option<u64> {
        parse_etag(self.headers.get(ETAG)?.to_str().ok()?)
    }
}

pub fn parse_etag(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    Connect(std::io::Error),
    Http(hyper::Error),
    Build(anyhow::Error),
}

impl Failure {
    /// A short, stable label to count failures by.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {}", e.kind()),
            Failure::Http(e) if e.is_incomplete_message() || e.is_closed() || e.is_canceled() => {
                "connection closed".into()
            }
            Failure::Http(e) if e.is_timeout() => "timeout".into(),
            Failure::Http(e) => format!("http: {e}"),
            Failure::Build(_) => "invalid request".into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) => write!(f, "http: {e}"),
            Failure::Build(e) => write!(f, "invalid request: {e:#}"),
        }
    }
}

/// One HTTP/1.1 connection, reopened after it fails.
pub struct Client {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// Opens the connection now (otherwise the first request does).
    pub async fn connect(&mut self) -> Result<(), Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(&self.target.addr)
                .await
                .map_err(Failure::Connect)?;
            stream.set_nodelay(true).map_err(Failure::Connect)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(Failure::Http)?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the server closes the connection.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(())
    }

    /// Forgets the connection (after a timeout: an abandoned request may still be on it).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Sends `planned` and reads the whole answer.
    pub async fn send(&mut self, planned: &Planned) -> Result<Answer, Failure> {
        let request = planned.request(&self.target).map_err(Failure::Build)?;
        self.send_request(request).await
    }

    pub async fn send_request(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        self.connect().await?;
        let sender = self.sender.as_mut().expect("connected above");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        match result {
            Ok(answer) => {
                if answer
                    .headers
                    .get(hyper::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                {
                    self.sender = None;
                }
                Ok(answer)
            }
            Err(e) => {
                self.sender = None;
                Err(Failure::Http(e))
            }
        }
    }
}

/// GETs `url` (a full `http://` URL) on a fresh connection: for occasional requests such as a
/// metrics scrape.
pub async fn get_once(url: &str) -> anyhow::Result<Answer> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    let path = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let base = format!(
        "http://{}",
        uri.authority().with_context(|| format!("{url}: no host"))?
    );
    let target = Target::parse(&base)?;
    let mut client = Client::new(target);
    client
        .send(&Planned::get(0, 0, path))
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.base_path, "");
        assert_eq!(t.path("/v1/places/a"), "/v1/places/a");
        assert_eq!(t.url, "http://127.0.0.1:8080");

        let t = Target::parse("http://localhost/api").unwrap();
        assert_eq!(t.addr, "localhost:80");
        assert_eq!(t.host, "localhost");
        assert_eq!(t.path("/v1/x?y=1"), "/api/v1/x?y=1");

        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("127.0.0.1:8080").is_err());
        assert!(Target::parse("http://u:p@127.0.0.1:1").is_err());
        assert!(Target::parse("http://127.0.0.1:1/?a=b").is_err());
    }

    #[test]
    fn etags() {
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("W/\"17\""), Some(17));
        assert_eq!(parse_etag(" \"18446744073709551615\" "), Some(u64::MAX));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("\"x\""), None);
    }

    #[test]
    fn requests_carry_host_and_body() {
        let target = Target::parse("http://127.0.0.1:9/base").unwrap();
        let planned = Planned {
            op: 0,
            tag: 1,
            method: Method::PUT,
            path: "/v1/places/a".into(),
            body: Some(("application/json", Bytes::from_static(b"{}"))),
        };
        let request = planned.request(&target).unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(request.uri(), "/base/v1/places/a");
        assert_eq!(request.headers()[HOST], "127.0.0.1:9");
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert!(request.headers().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn an_api_key_goes_into_every_request_and_never_into_debug_output() {
        let key = ApiKey::parse("k3y-value").unwrap();
        let target = Target::parse_with_key("http://127.0.0.1:9", Some(&key)).unwrap();
        let request = Planned::get(0, 0, "/v1/places/a".into())
            .request(&target)
            .unwrap();
        assert_eq!(request.headers()[AUTHORIZATION], "Bearer k3y-value");
        assert!(!format!("{target:?} {key:?}").contains("k3y-value"));
        assert!(ApiKey::parse("").is_err());
        assert!(ApiKey::parse("bad\nkey").is_err());
    }
}
