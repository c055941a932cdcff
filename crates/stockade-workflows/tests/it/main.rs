//! Integration tests of stockade-workflows: parsing, expressions, every lint rule, the
//! shipped examples, the committed JSON Schema, and the executor on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alert_rig;
mod definition;
mod engine;
mod engine_pair;
mod examples;
mod examples_pull;
mod examples_reports;
mod examples_run;
mod exec;
mod exec_alert;
mod exec_buffered;
mod exec_failures;
mod exec_http;
mod exec_nocodb;
mod exec_nocodb_real;
mod exec_orders;
mod exec_reads;
mod exec_script;
mod exec_stock;
mod exec_support;
mod exec_wait;
mod expr;
mod lint;
mod lint_script;
mod operate;
mod order_events;
mod registry;
mod robust;
mod triggers;
