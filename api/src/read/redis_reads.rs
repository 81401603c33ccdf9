//! The Redis reads the API makes, each bounded by the configured timeout. Errors mean "Redis is
//! unavailable": callers fall back to the store (entity reads) or answer 503.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, Value};

#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisUnavailable(pub String);

#[derive(Clone)]
pub struct RedisReads {
    conn: ConnectionManager,
    timeout: Duration,
}

impl RedisReads {
    pub fn new(conn: ConnectionManager, timeout: Duration) -> Self {
        Self { conn, timeout }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisUnavailable> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(RedisUnavailable(err.to_string())),
            Err(_) => Err(RedisUnavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisUnavailable> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// One round trip for many keys, in order.
    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, RedisUnavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // MGET of one key answers a bare value, not an array; ask for a Value and normalise.
        let value: Value = self.query(redis::cmd("MGET").arg(keys)).await?;
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        items
            .into_iter()
            .map(|item| {
                Option::<Vec<u8>>::from_redis_value(item)
                    .map_err(|e| RedisUnavailable(e.to_string()))
            })
            .collect()
    }

    pub async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, RedisUnavailable> {
        self.query(redis::cmd("HGETALL").arg(key)).await
    }

    /// Members within `radius_m` of (lon, lat), nearest first, with their distance in metres.
    pub async fn geosearch(
        &self,
        key: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<(String, f64)>, RedisUnavailable> {
        let mut cmd = redis::cmd("GEOSEARCH");
        cmd.arg(key)
            .arg("FROMLONLAT")
            .arg(lon)
            .arg(lat)
            .arg("BYRADIUS")
            .arg(radius_m)
            .arg("m")
            .arg("ASC")
            .arg("COUNT")
            .arg(limit)
            .arg("WITHDIST");
        let rows: Vec<(String, f64)> = self.query(&cmd).await?;
        Ok(rows)
    }

    /// Members by score, highest first (ties: member descending, as ZREVRANGE orders them).
    pub async fn top(
        &self,
        key: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, f64)>, RedisUnavailable> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(key)
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(offset)
            .arg(limit)
            .arg("WITHSCORES");
        self.query(&cmd).await
    }

    /// One page of `SCAN cursor MATCH pattern COUNT count`: the next cursor (0 when the scan is
    /// complete) and the keys of this page, as bytes (a foreign key need not be UTF-8).
    pub async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), RedisUnavailable> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.query(&cmd).await
    }

    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }
}
