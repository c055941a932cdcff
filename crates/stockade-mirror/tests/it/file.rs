//! The JSON-lines sink.
