//! Shared test helpers.

pub mod strategies;
