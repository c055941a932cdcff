//! Typed statements shared by both backends.
//!
//! Every table is read, and the tables added after the foundation (users, sessions, API
//! keys, bans, and later the sync tables) are written, with one SQL text that both
//! SQLite and PostgreSQL accept: positional `$1, $2, …` parameters in ascending order of first use, integers
//! for times and flags, `ON CONFLICT … DO UPDATE`, `RETURNING`. Statements are
//! `&'static str`, so no runtime text can become SQL. Every query runs against both
//! backends in the test suites.
//!
//! Rows are read typed: a row type implements [`FromRow`] once, next to its SELECT, by
//! taking the columns in SELECT order from a [`Columns`] cursor; [`crate::Store::query_as`]
//! then checks that the decode read every column of every row, so a SELECT and its
//! decode cannot drift apart silently. Scalars and tuples are rows too
//! (`query_one_as::<i64>("SELECT COUNT(*) …")`).
//!
//! Each table has one owner, the only crate that holds SQL for it; others call the
//! owner's functions:
//! - this crate: `stockade_meta`, `audit`, `keyring_*`, `credentials` (typed
//!   [`crate::Mutation`] variants and `Store` methods; the vault is their user), and
//!   `jobs`, `job_steps`, `schedule_ticks` ([`crate::jobs`], [`crate::journal`],
//!   [`crate::schedule`]: the durable job queue every background task shares);
//! - `stockade-access`: `users`, `sessions`, `recovery_codes`, `api_keys`, `bans`;
//! - `stockade-sync`: `connections`, `orders`, `order_lines`, `skus`, `listings`,
//!   `stock_ledger`, `sync_cursors`, `return_reports`, `purge_receipts` (counts for the
//!   CLI, demo and bench in `stockade_sync::stats`);
//! - `stockade-egress`: `egress_log`; `stockade-alerts`: `alert_channels`,
//!   `alert_outbox`, `alert_windows`; `stockade-workflows`: `workflows`,
//!   `workflow_versions` (its `registry`); `events` is appended to by every producer;
//! - `stockade-mirror`: `audit_mirror_state` (each audit mirror sink's cursor).

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

impl SqlValue {
    fn is_null(&self) -> bool {
        matches!(
            self,
            SqlValue::Int(None) | SqlValue::Text(None) | SqlValue::Bytes(None)
        )
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

/// One result row. It is read only through [`FromRow`] ([`SqlRow::decode`],
/// [`crate::Store::query_as`]): there are no getters by position.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub(crate) Vec<SqlValue>);

impl SqlRow {
    /// Decode the whole row as `T`: every column must be read, none twice.
    pub fn decode<T: FromRow>(&self) -> crate::Result<T> {
        let mut c = Columns { row: self, next: 0 };
        let v = T::from_row(&mut c)?;
        if c.next != self.0.len() {
            return Err(crate::StoreError::Database(format!(
                "the statement returns {} columns; {} reads {}",
                self.0.len(),
                std::any::type_name::<T>(),
                c.next
            )));
        }
        Ok(v)
    }

    fn col(&self, i: usize) -> crate::Result<&SqlValue> {
        self.0
            .get(i)
            .ok_or_else(|| crate::StoreError::Database(format!("result has no column {i}")))
    }
}

/// A type one column decodes to.
pub trait FromColumn: Sized {
    fn from_column(row: &SqlRow, i: usize) -> crate::Result<Self>;
}

macro_rules! from_column {
    ($($t:ty => $variant:ident, $want:literal),* $(,)?) => {$(
        /// A nullable column (a NULL of any type is `None`).
        impl FromColumn for Option<$t> {
            fn from_column(row: &SqlRow, i: usize) -> crate::Result<Self> {
                match row.col(i)? {
                    SqlValue::$variant(v) => Ok(v.clone()),
                    v if v.is_null() => Ok(None),
                    _ => Err(crate::StoreError::Database(format!("column {i} is not {}", $want))),
                }
            }
        }

        /// A column that must not be NULL.
        impl FromColumn for $t {
            fn from_column(row: &SqlRow, i: usize) -> crate::Result<Self> {
                Option::<$t>::from_column(row, i)?
                    .ok_or_else(|| crate::StoreError::Database(format!("column {i} is NULL")))
            }
        }
    )*};
}
from_column!(i64 => Int, "an integer", String => Text, "text", Vec<u8> => Bytes, "bytes");

/// A flag stored as an integer (0 is false).
impl FromColumn for bool {
    fn from_column(row: &SqlRow, i: usize) -> crate::Result<Self> {
        Ok(i64::from_column(row, i)? != 0)
    }
}

/// An audit hash (or any 32-byte digest) column.
impl FromColumn for [u8; 32] {
    fn from_column(row: &SqlRow, i: usize) -> crate::Result<Self> {
        <[u8; 32]>::try_from(Vec::<u8>::from_column(row, i)?)
            .map_err(|_| crate::StoreError::Corrupt(format!("column {i} is not a 32-byte hash")))
    }
}

/// The columns of one row, taken in SELECT order.
#[derive(Debug)]
pub struct Columns<'r> {
    row: &'r SqlRow,
    next: usize,
}

impl Columns<'_> {
    /// The next column as `T`.
    pub fn get<T: FromColumn>(&mut self) -> crate::Result<T> {
        let v = T::from_column(self.row, self.next)?;
        self.next += 1;
        Ok(v)
    }

    /// The next column, text parsed as `T`; a value that does not parse is stored data
    /// this version does not expect (`what` names it, never the value).
    pub fn parse<T: std::str::FromStr>(&mut self, what: &str) -> crate::Result<T> {
        self.get::<String>()?
            .parse()
            .map_err(|_| crate::StoreError::Corrupt(what.to_owned()))
    }

    /// The next column, JSON text decoded as `T` (see [`Columns::parse`]).
    pub fn json<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> crate::Result<T> {
        serde_json::from_str(&self.get::<String>()?)
            .map_err(|_| crate::StoreError::Corrupt(what.to_owned()))
    }
}

/// A type a whole result row decodes to: implement it once, next to the SELECT whose
/// columns it takes in order, and read with [`crate::Store::query_as`]. Rows nest: a
/// tuple's items and a struct's decode may take a whole row type's columns in turn.
pub trait FromRow: Sized {
    fn from_row(c: &mut Columns<'_>) -> crate::Result<Self>;
}

impl<T: FromColumn> FromRow for T {
    fn from_row(c: &mut Columns<'_>) -> crate::Result<Self> {
        c.get()
    }
}

macro_rules! tuple_from_row {
    ($($t:ident),+) => {
        impl<$($t: FromRow),+> FromRow for ($($t,)+) {
            fn from_row(c: &mut Columns<'_>) -> crate::Result<Self> {
                Ok(($($t::from_row(c)?,)+))
            }
        }
    };
}
tuple_from_row!(A);
tuple_from_row!(A, B);
tuple_from_row!(A, B, C);
tuple_from_row!(A, B, C, D);
tuple_from_row!(A, B, C, D, E);
tuple_from_row!(A, B, C, D, E, F);

/// How many rows a statement must affect for its commit to stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any number, zero included.
    Any,
    /// Exactly one; otherwise the whole commit fails with `what` not found.
    One(&'static str),
    /// Exactly one; otherwise the whole commit is refused as [`crate::StoreError::Fenced`]
    /// (a job's lease check, see [`crate::jobs`]). Not as the guard of a guarded
    /// [`crate::Mutation::Many`]: a guard that touches nothing skips its change silently.
    Fence(&'static str),
}
