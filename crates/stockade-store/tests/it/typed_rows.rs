//! Typed rows: a decode takes every column of the statement once, in order, with the
//! right types, on both backends; anything else is an error, never a guess.

use stockade_core::Environment;
use stockade_store::{Columns, FromRow, StoreError, sql_params};

use crate::harness::{Backend, TestDb, both};

both!(a_decode_reads_every_column_once);

struct Meta {
    key: String,
    value: Option<String>,
}

impl FromRow for Meta {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Meta {
            key: c.get()?,
            value: c.get()?,
        })
    }
}

struct Number;

impl FromRow for Number {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        c.parse::<u8>("a number").map(|_| Number)
    }
}

async fn a_decode_reads_every_column_once(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    const Q: &str = "SELECT key, value FROM stockade_meta WHERE key = $1";
    let env = sql_params!["environment"];
    let m: Meta = store.query_one_as(Q, env.clone()).await.unwrap().unwrap();
    assert_eq!(
        (m.key.as_str(), m.value.as_deref()),
        ("environment", Some("dev"))
    );
    let t: Option<(String, String)> = store.query_one_as(Q, env.clone()).await.unwrap();
    assert_eq!(t.map(|t| t.1).as_deref(), Some("dev"));
    let n = store.count(
        "SELECT COUNT(*) FROM stockade_meta WHERE key = $1",
        env.clone(),
    );
    assert_eq!(n.await.unwrap(), 1);
    let none = store.count(
        "SELECT 1 FROM stockade_meta WHERE key = $1",
        sql_params!["no"],
    );
    assert_eq!(none.await.unwrap(), 0);
    // Too few columns read, too many, or the wrong type: an error.
    assert!(store.query_one_as::<String>(Q, env.clone()).await.is_err());
    let too_many = store.query_one_as::<(String, String, String)>(Q, env.clone());
    assert!(too_many.await.is_err());
    assert!(
        store
            .query_one_as::<(i64, String)>(Q, env.clone())
            .await
            .is_err()
    );
    // A value that does not parse is named, never shown.
    let bad = store.query_one_as::<Number>("SELECT value FROM stockade_meta WHERE key = $1", env);
    assert!(matches!(bad.await, Err(StoreError::Corrupt(w)) if w == "a number"));
    store.close().await;
    db.cleanup().await;
}
