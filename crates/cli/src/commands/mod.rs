pub mod list;
pub mod serve;
