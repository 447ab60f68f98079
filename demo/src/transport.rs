//! How the stream travels from the source host to the destination host.
//!
//! The saver writes into a local socket the demo reads (the relay, which
//! meters the stream); the relay sends it over a [`Transport`] whose
//! receiving end is handed to the restorer as `fd:N`. A transport is
//! anything that yields a writer and a receiving descriptor. The `netns`
//! transport also brings the two network namespaces the saver and the
//! restorer then run in (see [`crate::netns`]).

use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::netns::NetnsPair;

/// The available transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// A TCP connection on 127.0.0.1 (an ephemeral port).
    Tcp,
    /// A connected pair of Unix stream sockets.
    Unix,
    /// TCP across a veth pair between two network namespaces made for the
    /// run (root only): the sending socket in the source's namespace, the
    /// receiving one on the destination's veth address in its namespace.
    Netns,
}

/// The sending side of an open link.
pub trait WireSender: Write + Send {
    /// Signals the end of the stream to the receiver (half-close).
    fn close_write(&mut self) -> io::Result<()>;
}

impl WireSender for TcpStream {
    fn close_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl WireSender for UnixStream {
    fn close_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// An open link between the hosts.
pub struct Link {
    /// Where the relay writes the stream.
    pub sender: Box<dyn WireSender>,
    /// What the restorer reads (`fd:N`).
    pub receiver: OwnedFd,
    /// For the display, e.g. `TCP 127.0.0.1:41234`.
    pub description: String,
    /// The namespaces of a `netns` link (deleted when dropped, so the link
    /// must outlive the children started in them).
    pub netns: Option<NetnsPair>,
}

impl Transport {
    /// Opens a link.
    pub fn open(self) -> io::Result<Link> {
        match self {
            Transport::Tcp => {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                let addr = listener.local_addr()?;
                let sender = TcpStream::connect(addr)?;
                let (receiver, _) = listener.accept()?;
                // The stream is written in large pieces; don't delay the
                // small records around them (the downtime includes them).
                sender.set_nodelay(true)?;
                Ok(Link {
                    sender: Box::new(sender),
                    receiver: receiver.into(),
                    description: format!("TCP {addr}"),
                    netns: None,
                })
            }
            Transport::Unix => {
                let (sender, receiver) = UnixStream::pair()?;
                Ok(Link {
                    sender: Box::new(sender),
                    receiver: receiver.into(),
                    description: "a Unix socket pair".to_string(),
                    netns: None,
                })
            }
            Transport::Netns => {
                let pair = NetnsPair::create(std::process::id()).map_err(io::Error::other)?;
                let (sender, receiver, addr) = pair.connect()?;
                sender.set_nodelay(true)?;
                Ok(Link {
                    sender: Box::new(sender),
                    receiver: receiver.into(),
                    description: format!(
                        "TCP {} -> {addr}, veth {} -> {}",
                        crate::netns::ADDR_SRC,
                        pair.veth_src,
                        pair.veth_dst
                    ),
                    netns: Some(pair),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(t: Transport) {
        let mut link = t.open().unwrap();
        link.sender.write_all(b"stream bytes").unwrap();
        link.sender.close_write().unwrap();
        let mut r = std::fs::File::from(link.receiver);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"stream bytes");
    }

    #[test]
    fn tcp_link_delivers_the_bytes_and_the_end() {
        round_trip(Transport::Tcp);
    }

    #[test]
    fn unix_link_delivers_the_bytes_and_the_end() {
        round_trip(Transport::Unix);
    }
}
