//! E-mail through the city's SMTP relay (plain SMTP, the usual setup for an
//! internal relay that forwards to the mail system): alarm escalations now,
//! rule notifications next. A small client on purpose: EHLO, MAIL, RCPT,
//! DATA, QUIT, every reply bounded in size and time, the message in UTF-8
//! with base64 bodies so accents survive any relay.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line read from the server.
const MAX_REPLY_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.smtp_url '{0}' is not smtp://host[:port]")]
    BadUrl(String),
    #[error("cannot reach the SMTP relay {relay}: {reason}")]
    Connect { relay: String, reason: String },
    #[error("the SMTP relay {relay} answered {reply:?} to {step}")]
    Refused {
        relay: String,
        step: &'static str,
        reply: String,
    },
    #[error("the SMTP relay {relay} did not answer within {} s", .timeout.as_secs())]
    Timeout { relay: String, timeout: Duration },
    #[error("'{0}' is not an e-mail address")]
    BadAddress(String),
}

/// Where mail goes out.
#[derive(Debug, Clone)]
pub struct Mailer {
    host: String,
    port: u16,
    from: String,
    timeout: Duration,
}

/// A plausible address, with nothing that could break the SMTP dialogue.
fn check_address(a: &str) -> Result<&str, MailError> {
    let ok = a.len() <= 254
        && a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
    if ok {
        Ok(a)
    } else {
        Err(MailError::BadAddress(a.to_owned()))
    }
}

impl Mailer {
    /// `smtp://host[:port]` (port 25 by default), sending as `from`.
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, MailError> {
        let url = url::Url::parse(smtp_url).map_err(|_| MailError::BadUrl(smtp_url.to_owned()))?;
        let host = url.host_str().filter(|_| url.scheme() == "smtp");
        let Some(host) = host else {
            return Err(MailError::BadUrl(smtp_url.to_owned()));
        };
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_owned(),
            port: url.port().unwrap_or(25),
            from: check_address(from)?.to_owned(),
            timeout: Duration::from_secs(15),
        })
    }

    fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Sends one message to `to`, all or nothing.
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Result<(), MailError> {
        for a in to {
            check_address(a)?;
        }
        tokio::time::timeout(self.timeout, self.dialogue(to, subject, body))
            .await
            .map_err(|_| MailError::Timeout {
                relay: self.relay(),
                timeout: self.timeout,
            })?
    }

    async fn dialogue(&self, to: &[String], subject: &str, body: &str) -> Result<(), MailError> {
        let relay = self.relay();
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| MailError::Connect {
                relay: relay.clone(),
                reason: e.to_string(),
            })?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut expect = async |step: &'static str, code: &str| -> Result<(), MailError> {
            // Multi-line replies: "250-..." lines then "250 ...".
            loop {
                let mut line = String::new();
                let n = (&mut read)
                    .take(MAX_REPLY_LINE as u64)
                    .read_line(&mut line)
                    .await
                    .map_err(|e| MailError::Connect {
                        relay: relay.clone(),
                        reason: e.to_string(),
                    })?;
                if n == 0 || !line.starts_with(code) {
                    return Err(MailError::Refused {
                        relay: relay.clone(),
                        step,
                        reply: line.trim_end().to_owned(),
                    });
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(());
                }
            }
        };
        let io = |e: std::io::Error| MailError::Connect {
            relay: self.relay(),
            reason: e.to_string(),
        };
        expect("the greeting", "220").await?;
        write.write_all(b"EHLO vigie\r\n").await.map_err(io)?;
        expect("EHLO", "250").await?;
        write
            .write_all(format!("MAIL FROM:<{}>\r\n", self.from).as_bytes())
            .await
            .map_err(io)?;
        expect("MAIL FROM", "250").await?;
        for a in to {
            write
                .write_all(format!("RCPT TO:<{a}>\r\n").as_bytes())
                .await
                .map_err(io)?;
            expect("RCPT TO", "250").await?;
        }
        write.write_all(b"DATA\r\n").await.map_err(io)?;
        expect("DATA", "354").await?;
        write
            .write_all(self.message(to, subject, body).as_bytes())
            .await
            .map_err(io)?;
        expect("the message", "250").await?;
        write.write_all(b"QUIT\r\n").await.map_err(io)?;
        Ok(())
    }

    /// The message, ending with the lone dot; base64 lines never start with one.
    fn message(&self, to: &[String], subject: &str, body: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let encoded = b64.encode(body.as_bytes());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
        format!(
            "From: Vigie <{from}>\r\nTo: {to}\r\nSubject: =?UTF-8?B?{subject}?=\r\nDate: {date}\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {body}\r\n.\r\n",
            from = self.from,
            to = to.join(", "),
            subject = b64.encode(subject.as_bytes()),
            body = lines.join("\r\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_urls_are_checked() {
        assert!(Mailer::new("smtp://relay.example.org", "vigie@example.org").is_ok());
        assert!(Mailer::new("http://relay", "vigie@example.org").is_err());
        assert!(Mailer::new("smtp://relay", "not an address").is_err());
        assert!(check_address("a@b").is_ok());
        assert!(check_address("a@b>\r\nRCPT TO:<c@d").is_err(), "no SMTP injection");
    }

    #[test]
    fn messages_are_utf8_base64_and_dot_terminated() {
        let m = Mailer::new("smtp://relay:2525", "vigie@example.org").expect("mailer");
        let text = m.message(&["ops@example.org".into()], "Alarme : coupure", "Armoire 14 — coupée");
        assert!(text.ends_with("\r\n.\r\n"));
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(!text.contains("Armoire 14"), "the body is encoded");
    }
}
