//! Credential sniffers ("password spoofing") over both directions of a relayed stream.
//!
//! SKELETON: signatures fixed, bodies to be written (issue 3).

use bytes::Bytes;

/// The protocol a credential was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP Basic authentication.
    Http,
    /// POP3 USER/PASS.
    Pop3,
}

impl Protocol {
    /// Returns the name used in the credentials log (`HTTP`, `POP3`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Pop3 => "POP3",
        }
    }
}

/// A credential seen in clear text and accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Where it was seen.
    pub protocol: Protocol,
    /// The captured username.
    pub user: Bytes,
    /// The captured password.
    pub password: Bytes,
}

/// Watches one relayed connection, both directions, with bounded memory.
#[derive(Debug)]
pub struct Sniffer {
    _private: (),
}

impl Sniffer {
    /// Creates a sniffer for a connection to destination port `port` (a hint only).
    pub fn new(_port: u16) -> Self {
        todo!("issue 3")
    }

    /// Inspects bytes the client sent to the destination.
    pub fn on_client(&mut self, _data: &[u8]) {
        todo!("issue 3")
    }

    /// Inspects bytes the destination sent to the client.
    pub fn on_server(&mut self, _data: &[u8]) {
        todo!("issue 3")
    }

    /// Returns the next credential found.
    #[must_use]
    pub fn poll_credential(&mut self) -> Option<Credential> {
        todo!("issue 3")
    }

    /// Returns whether the sniffer has given up on this connection (the transport may stop
    /// feeding it, e.g. to switch to a zero-copy relay).
    pub fn is_done(&self) -> bool {
        todo!("issue 3")
    }
}
