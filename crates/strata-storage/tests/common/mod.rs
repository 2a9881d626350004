//! Helpers shared by the S3 suites.

/// The loopback S3 server `cargo xtask ci` starts: `(endpoint, bucket)`. Where the run
/// requires S3 (`STRATA_S3_REQUIRED`, set by `cargo xtask ci`) a missing server fails the
/// test with the reason; elsewhere (a plain `cargo test`) the test is skipped, saying so.
pub(crate) fn s3_server(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("STRATA_S3_ENDPOINT"),
        std::env::var("STRATA_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => Some((endpoint, bucket)),
        _ if std::env::var_os("STRATA_S3_REQUIRED").is_some() => panic!(
            "{test}: S3 is required in this run but no server is configured: {}",
            std::env::var("STRATA_S3_UNAVAILABLE").unwrap_or_else(|_| "no reason given".into())
        ),
        _ => {
            eprintln!(
                "skipping {test}: STRATA_S3_ENDPOINT/STRATA_S3_BUCKET are not set (`cargo xtask ci` starts a local moto server, sets them, and requires them)"
            );
            None
        }
    }
}

/// A new region manifest on `store` (default options).
pub(crate) async fn create_manifest(
    store: &opendal::Operator,
    metadata: strata_request::RegionMetadata,
    config: &strata_storage::ManifestConfig,
) -> strata_storage::ManifestManager {
    strata_storage::ManifestManager::create(
        store.clone(),
        metadata,
        strata_request::RegionOptions::default(),
        config.clone(),
    )
    .await
    .unwrap()
}
