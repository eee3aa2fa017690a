//! PostgreSQL connections with libpq's TLS meaning, and the logical replication protocol.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgmorph_replication::Error> {
//! use pgmorph_replication::{ConnectOptions, Connection, Endpoint, Lsn, StartOptions};
//!
//! let mut endpoint = Endpoint::parse("postgres://repl@db.example.com/shop?sslmode=verify-full")?;
//! endpoint.resolve_password(None, &pgmorph_replication::endpoint::process_env)?;
//! let options = ConnectOptions { replication: true, ..ConnectOptions::default() };
//! let session = Connection::connect(&endpoint, &options).await?;
//! let mut stream = session
//!     .start_replication(StartOptions::new("slot", Lsn(0), vec!["pub".into()]))
//!     .await?;
//! while let Some(event) = stream.next().await? {
//!     // hand XLogData payloads to the pgoutput decoder, then:
//!     // stream.positions().set_flush(lsn);
//! #   let _ = event;
//! }
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]

pub mod conn;
pub mod endpoint;
pub mod error;
pub mod replication;
pub mod tls;

pub use conn::{AuthMethod, ConnectOptions, Connection, QueryResult};
pub use endpoint::{Endpoint, EndpointError, RootCert, SslMode, TlsSettings};
pub use error::{Error, ServerError};
pub use replication::{
    CreatedSlot, Lsn, ReplicationEvent, ReplicationStream, SlotOptions, SnapshotAction,
    StandbyPositions, StartOptions, Streaming, SystemIdentity, XLogData,
};
pub use tls::{MakePgTls, TlsConnector, TlsError};
