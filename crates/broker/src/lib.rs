//! Placeholder until the embedded broker lands: binds nothing.
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[error("embedded broker unavailable")]
pub struct BrokerError;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
}
impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}
pub struct EmbeddedBroker;
impl EmbeddedBroker {
    pub async fn start(_config: BrokerConfig) -> Result<Self, BrokerError> {
        Err(BrokerError)
    }
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }
    pub async fn shutdown(self) {}
}
