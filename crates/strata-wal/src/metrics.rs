//! `strata_wal_*` metrics, registered on the embedder's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

use crate::error::WalError;

/// The file log store's metrics.
#[derive(Debug, Clone)]
pub(crate) struct WalMetrics {
    pub(crate) bytes: IntCounter,
    pub(crate) entries: IntCounter,
    pub(crate) syncs: IntCounter,
    pub(crate) append_seconds: Histogram,
    pub(crate) group_size: Histogram,
}

impl WalMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, WalError> {
        fn counter(
            registry: &Registry,
            name: &'static str,
            help: &str,
        ) -> Result<IntCounter, WalError> {
            let c = IntCounter::new(name, help).map_err(|source| WalError::RegisterMetric {
                name,
                source: source.into(),
            })?;
            registry
                .register(Box::new(c.clone()))
                .map_err(|source| WalError::RegisterMetric {
                    name,
                    source: source.into(),
                })?;
            Ok(c)
        }
        fn histogram(
            registry: &Registry,
            name: &'static str,
            help: &str,
            buckets: Vec<f64>,
        ) -> Result<Histogram, WalError> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).map_err(
                |source| WalError::RegisterMetric {
                    name,
                    source: source.into(),
                },
            )?;
            registry
                .register(Box::new(h.clone()))
                .map_err(|source| WalError::RegisterMetric {
                    name,
                    source: source.into(),
                })?;
            Ok(h)
        }
        let latency = prometheus::exponential_buckets(50e-6, 2.0, 16).map_err(|source| {
            WalError::RegisterMetric {
                name: "strata_wal_append_seconds",
                source: source.into(),
            }
        })?;
        Ok(Self {
            bytes: counter(
                registry,
                "strata_wal_bytes_total",
                "Bytes written to WAL segments.",
            )?,
            entries: counter(
                registry,
                "strata_wal_entries_total",
                "Entries appended to the WAL.",
            )?,
            syncs: counter(
                registry,
                "strata_wal_syncs_total",
                "fdatasync calls on WAL segments.",
            )?,
            append_seconds: histogram(
                registry,
                "strata_wal_append_seconds",
                "Time from submitting an append to its acknowledgement.",
                latency,
            )?,
            group_size: histogram(
                registry,
                "strata_wal_group_size",
                "Commands committed together as one group (one sync under sync = always).",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            )?,
        })
    }
}
