//! One connection to Redis: a multiplexed RESP3 connection to a server, or
//! a cluster connection (sharded pub/sub), carrying commands and pushes.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, ProtocolVersion, PushInfo, RedisFuture,
    RedisResult, Value,
};
use tokio::sync::mpsc;

use super::{RedisBrokerBuilder, RedisMode};

/// One connection, to a server or a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    pub(super) async fn subscribe(&mut self, channels: Vec<String>) -> RedisResult<()> {
        if channels.is_empty() {
            return Ok(());
        }
        match self {
            Self::Single(c) => c.subscribe(channels).await,
            Self::Cluster(c) => c.ssubscribe(channels).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, channel: String) -> RedisResult<()> {
        match self {
            Self::Single(c) => c.unsubscribe(channel).await,
            Self::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

/// Opens connection number `generation`; its pushes go to `tx` tagged
/// with it.
pub(super) async fn open(
    config: &RedisBrokerBuilder,
    generation: u64,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
) -> RedisResult<Conn> {
    let sender = move |info: PushInfo| tx.send((generation, info));
    match config.mode {
        RedisMode::Standalone => {
            let info = config.urls[0].as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let conn_config = AsyncConnectionConfig::new()
                .set_push_sender(sender)
                .set_connection_timeout(Some(config.link.connect_timeout))
                .set_response_timeout(Some(config.link.response_timeout));
            let conn = client
                .get_multiplexed_async_connection_with_config(&conn_config)
                .await?;
            Ok(Conn::Single(conn))
        }
        RedisMode::Sharded => {
            let client = redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(sender)
                .connection_timeout(config.link.connect_timeout)
                .response_timeout(config.link.response_timeout)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}
