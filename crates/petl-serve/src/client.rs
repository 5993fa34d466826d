//! A minimal keep-alive HTTP/1.1 client for petl's own server: what the tests and the load
//! test need, without an HTTP client stack.

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One connection to a petl server.
pub struct Client {
    stream: BufReader<TcpStream>,
    host: String,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &serde_json::Value) -> io::Result<Response> {
        self.request("POST", path, Some(body.to_string().as_bytes()))
            .await
    }

    /// Sends one request and reads its response (which must carry a Content-Length).
    ///
    /// A body above [`EXPECT_CONTINUE_ABOVE`] bytes is sent only after the server's
    /// `100 Continue`: a server that refuses it on its declared length (413) answers first,
    /// and the body is never sent. Sending it anyway raced the server's close: the unread body
    /// made the server's kernel reset the connection, which could discard the 413 before it
    /// was read.
    pub async fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
        let body = body.unwrap_or_default();
        let expect_continue = body.len() > EXPECT_CONTINUE_ABOVE;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            self.host,
            body.len(),
            if expect_continue { "Expect: 100-continue\r\n" } else { "" }
        );
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes()).await?;
        if !expect_continue {
            w.write_all(body).await?;
            w.flush().await?;
            return self.read_response().await;
        }
        w.flush().await?;
        let (status, length) = self.read_head().await?;
        if status != 100 {
            return self.read_body(status, length).await;
        }
        let w = self.stream.get_mut();
        w.write_all(body).await?;
        w.flush().await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let (status, length) = self.read_head().await?;
        self.read_body(status, length).await
    }

    /// The status and Content-Length of the next response head (an interim `100 Continue`
    /// has neither body nor length).
    async fn read_head(&mut self) -> io::Result<(u16, Option<usize>)> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in headers",
                ));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>().map_err(|e| bad(e.to_string()))?);
                }
            }
        }
        Ok((status, length))
    }

    async fn read_body(&mut self, status: u16, length: Option<usize>) -> io::Result<Response> {
        let length = length.ok_or_else(|| bad("response without Content-Length".into()))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Response { status, body })
    }
}

/// Request bodies above this many bytes wait for the server's `100 Continue`.
pub const EXPECT_CONTINUE_ABOVE: usize = 64 * 1024;

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
