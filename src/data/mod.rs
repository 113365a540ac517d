//! Machine data: a machine is a folder `<data_dir>/machines/<machine_id>/` holding the legacy layout
//! (`train/val/test` as Parquet or CSV, as the replaced Python stack wrote them) or a `machine.toml` that describes any CSV/Parquet files.
//! Both load into one [`Table`]. [`simulate`] writes a demo fleet in the legacy layout.
mod build;
mod caps;
mod confine;
mod describe;
mod error;
mod frame;
pub mod grid;
mod id;
pub mod live;
mod load;
mod peek;
mod read;
mod read_parquet;
mod read_text;
pub mod retention;
pub mod simulate;
mod sources;
mod summaries;
mod table;
pub mod upload;
pub mod write;

pub use build::{STREAM_AFTER_ROWS, Tail};
pub use caps::Caps;
pub use describe::{DEFAULT_TRAILING_HOURS, MachineToml};
pub use error::DataError;
pub use id::MachineId;
pub use load::{
    MachineSummary, folder_id, folder_mtime, list_machines, load_machine, load_machine_dir, load_machine_dir_gridded,
    load_machine_dir_tail, load_machine_dir_within, load_machine_gridded, load_machine_tail, load_machine_within, machine_description,
    machine_dir, machine_ids, summarize,
};
pub use peek::peek_machine;
pub use summaries::{Summaries, Summary};
pub use table::{Layout, MachineMeta, Sensor, Split, SplitHint, SplitMethod, Table};
