//! Integration tests of stockade-workflows: parsing, expressions, every lint rule, the
//! shipped examples and the committed JSON Schema.

mod definition;
mod examples;
mod expr;
mod lint;
mod registry;
mod robust;
