pub mod charm;
pub mod ops;
pub mod workload;
