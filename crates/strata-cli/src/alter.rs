//! `strata alter`: change a region's options — today its time to live.

use std::time::Duration;

use strata_engine::{AlterKind, AlterRequest, EngineBuilder, RegionId, RegionOptionChange};

use crate::EngineArgs;

/// A TTL as given on the command line: a duration (`7d`, `12h`, `90m`) or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TtlArg(Option<Duration>);

fn parse_ttl(text: &str) -> Result<TtlArg, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(TtlArg(None));
    }
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 7d or 12h, nor none: {e}"))?;
    if ttl.is_zero() {
        return Err("a TTL of zero would hide every row; use none to keep rows forever".into());
    }
    Ok(TtlArg(Some(ttl)))
}

/// Arguments of `strata alter`.
#[derive(Debug, clap::Args)]
pub(crate) struct AlterArgs {
    /// Region id as `table.region`, e.g. 1024.0.
    #[arg(long)]
    region: RegionId,
    /// Time to live: scans no longer return rows older than this (7d, 12h, …); `none`
    /// keeps rows forever. Expired rows stay on disk until a compaction removes them.
    #[arg(long, value_parser = parse_ttl)]
    ttl: TtlArg,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Opens the engine read-write (refused while an ingest holds the directory), changes
/// the option in the region's manifest, and prints the old and new value.
pub(crate) async fn run(args: AlterArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let engine = EngineBuilder::new(config.clone())
        .build()
        .await
        .map_err(|e| crate::open_error(&e, &config))?;
    let result = alter(&engine, &args).await;
    engine.stop().await.map_err(|e| e.to_string())?;
    result
}

async fn alter(engine: &strata_engine::Engine, args: &AlterArgs) -> Result<(), String> {
    let region = args.region;
    engine
        .open(region)
        .await
        .map_err(|e| crate::open_error(&e, engine.config()))?;
    let before = engine
        .region_options(region)
        .map_err(|e| e.to_string())?
        .ttl;
    let schema_version = engine
        .region_metadata(region)
        .map_err(|e| e.to_string())?
        .schema_version();
    engine
        .alter(AlterRequest::new(
            region,
            schema_version,
            AlterKind::SetOptions {
                changes: vec![RegionOptionChange::Ttl(args.ttl.0)],
            },
        ))
        .await
        .map_err(|e| e.to_string())?;
    outln!(
        "region {region}: ttl {} (was {})",
        show(args.ttl.0),
        show(before)
    );
    Ok(())
}

fn show(ttl: Option<Duration>) -> String {
    ttl.map_or_else(
        || "none".into(),
        |d| humantime::format_duration(d).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_a_positive_duration_or_none() {
        assert_eq!(
            parse_ttl("7d"),
            Ok(TtlArg(Some(Duration::from_secs(604_800))))
        );
        assert_eq!(parse_ttl("none"), Ok(TtlArg(None)));
        assert!(parse_ttl("0s").unwrap_err().contains("zero"));
        assert!(
            parse_ttl("seven days")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
