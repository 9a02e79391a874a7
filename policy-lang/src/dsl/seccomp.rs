//! stub
use super::Shared;
use rhai::Engine;

pub(crate) fn register(_engine: &mut Engine, _shared: &Shared) {}
