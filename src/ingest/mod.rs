//! Readings in: rows of a machine's sensors, checked one by one and made durable before anyone is told
//! they were accepted.
//!
//! [`parse_json`] and [`parse_csv`] read a body of rows, [`check_rows`] keeps the good ones and names what is wrong with each
//! other one, and [`Wal`] appends a machine's accepted rows to a write-ahead log shared by every machine:
//! one writer thread gathers whatever batches are waiting, writes them and syncs once for all of them
//! (group commit), and only then answers each caller. A frame carries its length and a CRC-32, so a write
//! cut by a power loss is found and cut off at the next start; nothing acknowledged is lost.
//! [`Readings::compact`] moves the log's readings into each machine's own history (`live/` files the
//! loaders read) and removes the segments that hold nothing else.
mod compact;
mod error;
mod readings;
mod rows;
mod topic;
mod wal;

pub use compact::Compaction;
pub use error::IngestError;
pub use readings::{Accepted, Readings, Stored, Tolerances};
pub use rows::{Checked, Row, RowError, Rules, check_rows, parse_csv, parse_json, parse_value};
pub use topic::{ReadingsTopic, TopicOf};
pub use wal::{Batch, Recovered, Scan, Wal, read_all};
