//! The named upstreams' balancers (SPEC §7 `upstreams`): pingora's round
//! robin over every address their entries stand for, with host names
//! looked up again every `upstream.dns_refresh_seconds`.
//!
//! The balancer learns its addresses from [`Names`], a pingora service
//! discovery over [`dns::Address`]es: each update refreshes every name
//! (a failed or empty lookup keeps that name's last addresses) and hands
//! over the union. Lookups run in the balancer's background service, never
//! on a request.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};

use crate::dns;

/// A named upstream: round robin over its healthy addresses.
pub type Balancer = LoadBalancer<RoundRobin>;

/// Every address of a named upstream's entries, as of the last lookup.
pub struct Names {
    addresses: Vec<Arc<dns::Address>>,
    /// The first discovery only collects what the start-up lookups found.
    started: AtomicBool,
}

impl Names {
    fn backends(&self) -> BTreeSet<Backend> {
        self.addresses
            .iter()
            .flat_map(|a| a.addresses().iter().copied().collect::<Vec<_>>())
            .map(|address| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(address),
                weight: 1,
                ext: http::Extensions::new(),
            })
            .collect()
    }
}

#[async_trait]
impl ServiceDiscovery for Names {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        if self.started.swap(true, Ordering::AcqRel) {
            for address in &self.addresses {
                if let Err(why) = address.refresh().await {
                    tracing::warn!("{why}");
                }
            }
        }
        Ok((self.backends(), HashMap::new()))
    }
}

/// The balancer over `addresses` (already resolved at start), and whether
/// it has names to look up again every `refresh` (then it must run as a
/// background service).
pub fn balancer(addresses: &[Arc<dns::Address>], refresh: Duration) -> (Balancer, bool) {
    let has_names = addresses.iter().any(|a| a.is_name());
    let names = Names {
        addresses: addresses.to_vec(),
        started: AtomicBool::new(false),
    };
    let mut balancer = Balancer::from_backends(Backends::new(Box::new(names)));
    // The first update only collects the start-up lookups: it completes on
    // its first poll, so no runtime is needed to build the balancer.
    {
        let first = std::pin::pin!(balancer.update());
        match first.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => tracing::error!("named upstream: {e}"),
            Poll::Pending => tracing::error!("named upstream: the first update did not complete"),
        }
    }
    if has_names {
        balancer.update_frequency = Some(refresh);
    }
    (balancer, has_names)
}
