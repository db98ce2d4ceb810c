//! Command-line pieces shared by the `socks5d` server and the `socks5ctl` client, so that the
//! two spell their common flags the same way. Not a stable API: embed `socks5d-tokio` or
//! `socks5d-async-std` instead.

pub mod args {
    //! Values of `--admin-dialect` and `--admin-transport`.

    use clap::ValueEnum;
    use socks5d_core::admin::Dialect;
    use socks5d_net::AdminTransport;

    /// Dialect of the administration protocol.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
    pub enum DialectArg {
        /// The draft specification (default).
        Draft,
        /// The final revision, as the original socks5d and its client speak it.
        Final,
    }

    impl From<DialectArg> for Dialect {
        fn from(d: DialectArg) -> Self {
            match d {
                DialectArg::Draft => Self::Draft,
                DialectArg::Final => Self::Final,
            }
        }
    }

    /// Transport of the administration service.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
    pub enum TransportArg {
        /// SCTP, or TCP on the same address and port if the kernel has no SCTP.
        Auto,
        /// SCTP only (fail if the kernel has no SCTP).
        Sctp,
        /// TCP only.
        Tcp,
    }

    impl From<TransportArg> for AdminTransport {
        fn from(t: TransportArg) -> Self {
            match t {
                TransportArg::Auto => Self::Auto,
                TransportArg::Sctp => Self::Sctp,
                TransportArg::Tcp => Self::Tcp,
            }
        }
    }
}
