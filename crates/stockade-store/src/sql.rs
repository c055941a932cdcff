//! Typed statements shared by both backends.
//!
//! Tables added after the foundation (users, sessions, API keys, bans, and later the
//! sync tables) are read and written with one SQL text that both SQLite and PostgreSQL
//! accept: positional `$1, $2, …` parameters in ascending order of first use, integers
//! for times and flags, `ON CONFLICT … DO UPDATE`, `RETURNING`. Statements are
//! `&'static str`, so no runtime text can become SQL. Every query runs against both
//! backends in the test suites.

/// A bound parameter or a column value. Nulls carry their type, because PostgreSQL
/// checks a parameter's type against its column.
#[derive(Clone, PartialEq)]
pub enum SqlValue {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl std::fmt::Debug for SqlValue {
    // Values may be ciphertext or hashes: show only their shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Int(v) => write!(f, "Int({v:?})"),
            SqlValue::Text(v) => write!(f, "Text({})", v.as_ref().map_or(0, |s| s.len())),
            SqlValue::Bytes(v) => write!(f, "Bytes({})", v.as_ref().map_or(0, |b| b.len())),
        }
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(v: Option<i64>) -> Self {
        SqlValue::Int(v)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(Some(i64::from(v)))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}
impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Bytes(Some(v))
    }
}
impl From<Option<Vec<u8>>> for SqlValue {
    fn from(v: Option<Vec<u8>>) -> Self {
        SqlValue::Bytes(v)
    }
}

/// Build a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => { vec![$($crate::sql::SqlValue::from($v)),*] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub(crate) Vec<SqlValue>);

impl SqlRow {
    fn col(&self, i: usize) -> crate::Result<&SqlValue> {
        self.0
            .get(i)
            .ok_or_else(|| crate::StoreError::Database(format!("result has no column {i}")))
    }

    pub fn int(&self, i: usize) -> crate::Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| crate::StoreError::Database(format!("column {i} is NULL")))
    }

    pub fn opt_int(&self, i: usize) -> crate::Result<Option<i64>> {
        match self.col(i)? {
            SqlValue::Int(v) => Ok(*v),
            SqlValue::Text(None) | SqlValue::Bytes(None) => Ok(None),
            _ => Err(type_err(i, "an integer")),
        }
    }

    pub fn bool(&self, i: usize) -> crate::Result<bool> {
        Ok(self.int(i)? != 0)
    }

    pub fn text(&self, i: usize) -> crate::Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| crate::StoreError::Database(format!("column {i} is NULL")))
    }

    pub fn opt_text(&self, i: usize) -> crate::Result<Option<String>> {
        match self.col(i)? {
            SqlValue::Text(v) => Ok(v.clone()),
            SqlValue::Int(None) | SqlValue::Bytes(None) => Ok(None),
            _ => Err(type_err(i, "text")),
        }
    }

    pub fn bytes(&self, i: usize) -> crate::Result<Vec<u8>> {
        self.opt_bytes(i)?
            .ok_or_else(|| crate::StoreError::Database(format!("column {i} is NULL")))
    }

    pub fn opt_bytes(&self, i: usize) -> crate::Result<Option<Vec<u8>>> {
        match self.col(i)? {
            SqlValue::Bytes(v) => Ok(v.clone()),
            SqlValue::Int(None) | SqlValue::Text(None) => Ok(None),
            _ => Err(type_err(i, "bytes")),
        }
    }
}

fn type_err(i: usize, want: &str) -> crate::StoreError {
    crate::StoreError::Database(format!("column {i} is not {want}"))
}

/// How many rows a statement must affect for its commit to stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any number, zero included.
    Any,
    /// Exactly one; otherwise the whole commit fails with `what` not found.
    One(&'static str),
}
