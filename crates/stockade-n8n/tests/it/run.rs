//! Converted workflows run on the executor (see exec tests in stockade-workflows).
