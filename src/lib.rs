pub mod charm;
pub mod ops;
