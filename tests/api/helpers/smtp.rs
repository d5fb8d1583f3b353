//! A small SMTP sink on loopback: speaks enough real SMTP (EHLO, MAIL, RCPT, DATA, QUIT) for
//! lettre, and keeps what it receives so tests can read the mail.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    task::JoinHandle,
};

/// One received message.
#[derive(Clone, Debug)]
pub struct Mail {
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The raw DATA.
    pub data: String,
}

impl Mail {
    /// The decoded text of the message (quoted-printable soft breaks and escapes undone).
    pub fn text(&self) -> String {
        decode_qp(&self.data)
    }

    /// The first link to `path` in the message.
    pub fn link(&self, path: &str) -> String {
        let text = self.text();
        let start = text
            .find(&format!("/{path}?token="))
            .expect("a link in the mail");
        let begin = text[..start].rfind("http").unwrap();
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .map_or(text.len(), |e| start + e);
        text[begin..end].to_owned()
    }

    /// The token of the first link to `path`.
    pub fn token(&self, path: &str) -> String {
        self.link(path).split_once("token=").unwrap().1.to_owned()
    }

    /// The six-digit code in the message.
    pub fn code(&self) -> String {
        let text = self.text();
        let at = text.find("code on the sign-in page: ").expect("a code") + 26;
        text[at..at + 6].to_owned()
    }

    /// Whether this is a "new sign-in" notice.
    pub fn is_sign_in_notice(&self) -> bool {
        self.subject().starts_with("New sign-in to")
    }

    /// The subject line.
    pub fn subject(&self) -> String {
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_owned()
    }
}

fn decode_qp(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sink: a port, the mail it received, and a switch to stop listening.
pub struct SmtpSink {
    /// Loopback port.
    pub port: u16,
    /// What arrived.
    pub mails: Arc<Mutex<Vec<Mail>>>,
    server: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts a sink on a free port.
    pub async fn start() -> Self {
        Self::start_on(0, Arc::default()).await
    }

    /// Starts (again) on `port`, keeping `mails`.
    pub async fn start_on(port: u16, mails: Arc<Mutex<Vec<Mail>>>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = mails.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store).await;
                });
            }
        });
        Self {
            port,
            mails,
            server: Some(server),
        }
    }

    /// Stops listening (connections are refused until [`SmtpSink::restart`]).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Starts listening again on the same port.
    pub async fn restart(&mut self) {
        let again = Self::start_on(self.port, self.mails.clone()).await;
        let mut again = again;
        self.server = again.server.take();
    }

    /// `smtp://127.0.0.1:<port>` (plain, loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Mail to `address` so far, except the "new sign-in" notices (every sign-in from a fresh
    /// client sends one, so counting them would tie every mail test to its sign-ins; the notice
    /// tests read them with [`SmtpSink::notices_to`]).
    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.all_to(address)
            .into_iter()
            .filter(|m| !m.is_sign_in_notice())
            .collect()
    }

    /// The "new sign-in" notices to `address` so far.
    pub fn notices_to(&self, address: &str) -> Vec<Mail> {
        self.all_to(address)
            .into_iter()
            .filter(Mail::is_sign_in_notice)
            .collect()
    }

    fn all_to(&self, address: &str) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .cloned()
            .collect()
    }

    /// Waits (10 s at most) until `n` messages to `address` arrived; returns the newest.
    pub async fn wait_for(&self, address: &str, n: usize) -> Mail {
        self.wait_for_within(address, n, Duration::from_secs(10))
            .await
    }

    /// Waits (10 s at most) for a message to `address` whose subject contains `subject`; returns
    /// the newest such.
    pub async fn wait_for_subject(&self, address: &str, subject: &str) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self
                .all_to(address)
                .into_iter()
                .rev()
                .find(|m| m.subject().contains(subject))
            {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for a mail to {address} about {subject:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`SmtpSink::wait_for`] with another deadline.
    pub async fn wait_for_within(&self, address: &str, n: usize, limit: Duration) -> Mail {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.to(address);
            if got.len() >= n {
                return got.last().unwrap().clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for mail {n} to {address}; have {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM") {
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            let addr = line[line.find('<').map_or(8, |i| i + 1)..]
                .trim()
                .trim_end_matches('>')
                .to_owned();
            to.push(addr);
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            store.lock().unwrap().push(Mail {
                to: std::mem::take(&mut to),
                data,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}

/// An app that sends its mail to a fresh SMTP sink, with `extra` settings.
pub async fn app_with_mail(extra: &[(&str, &str)]) -> (crate::helpers::TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let mut builder = crate::helpers::TestApp::builder().with("SMTP_URL", &sink.url());
    for (k, v) in extra {
        builder = builder.with(k, v);
    }
    (builder.spawn().await, sink)
}
