//! Untrusted names: hostile column names, S3 buckets and prefixes never make the engine
//! create anything outside its data root; configured secrets never show in `Debug` output
//! or error messages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, ObjectStoreConfig,
    RegionId, RegionMetadataBuilder, WriteRequest,
};

/// Names an attacker might try, as column names or path parts.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "..",
        ".",
        "../escape",
        "../../etc/passwd",
        "/etc/passwd",
        "/tmp/strata-escape",
        "a/b",
        "a/../../b",
        "..\\..\\windows",
        "C:\\evil",
        "nul\0byte",
        "\0",
        "new\nline",
        "tab\there",
        " ",
        "~",
        "~/.ssh",
        "$HOME",
        "%2e%2e%2f",
        "*",
        "?",
        "a:b",
        "con",
        "\u{202e}gnp.exe",
        "😀/😀",
        "./.hidden",
        "regions",
        ".dropping",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("x".repeat(5000));
    names.push("../".repeat(300));
    names
}

/// Every file and directory under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let p = entry.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_column_names_create_nothing_outside_the_data_root() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("data");
    let mut config = EngineConfig::default();
    config.data_home = root.clone();
    config.num_workers = 2;
    let engine = EngineBuilder::new(config).build().await.unwrap();
    let names = hostile_names();
    assert!(names.len() >= 25);
    let (mut accepted, mut refused) = (0, 0);
    for (i, name) in names.iter().enumerate() {
        let region = RegionId::new(50, i as u32);
        let built = RegionMetadataBuilder::new(region)
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field(name.as_str(), ColumnDataType::Int64))
            .build();
        let Ok(metadata) = built else {
            refused += 1;
            continue;
        };
        engine
            .create(CreateRequest::new(metadata.clone()))
            .await
            .unwrap();
        let batch = RecordBatch::try_new(
            metadata.arrow_schema().clone(),
            vec![
                Arc::new(StringArray::from(vec!["h"])) as ArrayRef,
                Arc::new(TimestampMillisecondArray::from(vec![1])),
                Arc::new(Int64Array::from(vec![7])),
            ],
        )
        .unwrap();
        engine
            .write(WriteRequest::put(region, batch))
            .await
            .unwrap();
        engine.flush(region).await.unwrap();
        let rows = strata_tests::count_rows(&engine, region).await;
        assert_eq!(rows, 1, "{name:?}");
        accepted += 1;
    }
    engine.stop().await.unwrap();
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
    // Only the data root exists beside nothing; inside it, only the engine's own layout.
    let outside: Vec<String> = tree(outer.path())
        .into_iter()
        .filter(|p| !p.starts_with("data"))
        .collect();
    assert!(
        outside.is_empty(),
        "created outside the data root: {outside:?}"
    );
    for path in tree(&root) {
        assert!(
            // The WAL, the regions, the object store's atomic-write staging directory, and
            // the directory's lock file.
            path.starts_with("wal")
                || path.starts_with("regions")
                || path.starts_with(".tmp")
                || path == "LOCK",
            "unexpected path in the data root: {path:?}"
        );
    }
}

#[test]
fn hostile_s3_buckets_and_prefixes_are_refused() {
    let mut refused = 0;
    for name in hostile_names() {
        let escapes = name.contains("..")
            || name.starts_with('/')
            || name.contains('\0')
            || name.contains('\\');
        let as_root: ObjectStoreConfig = serde_json::from_value(serde_json::json!({
            "type": "s3", "bucket": "b", "root": name,
        }))
        .unwrap();
        let result = as_root.build();
        if escapes {
            assert!(result.is_err(), "root {name:?} was accepted");
            refused += 1;
        }
        let as_bucket: ObjectStoreConfig = serde_json::from_value(serde_json::json!({
            "type": "s3", "bucket": name,
        }))
        .unwrap();
        if escapes || name.contains('/') {
            assert!(as_bucket.build().is_err(), "bucket {name:?} was accepted");
        }
    }
    assert!(refused >= 10, "{refused}");
}

#[test]
fn configured_secrets_never_show_in_debug_output_or_errors() {
    let secret = "sup3r-s3cret-k3y";
    let text = format!(
        "[object_store]\ntype = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"{secret}\"\naccess_key_id = \"id\"\n"
    );
    let config = EngineConfig::from_toml(&text).unwrap();
    assert!(!format!("{config:?}").contains(secret));
    assert!(!format!("{config:#?}").contains(secret));
    let bad = format!("{text}num_workers = 0\n");
    let error = EngineConfig::from_toml(&bad).unwrap_err();
    assert!(!error.to_string().contains(secret), "{error}");
    assert!(!format!("{error:?}").contains(secret));
    let typo = text.replace("bucket", "buckett");
    let error = EngineConfig::from_toml(&typo).unwrap_err();
    assert!(!error.to_string().contains(secret), "{error}");
}
