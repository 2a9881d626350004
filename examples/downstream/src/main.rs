//! Runs the downstream example in a temporary directory and prints what it saw.

#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> Result<(), strata_example_downstream::BoxError> {
    let dir = std::env::temp_dir().join(format!("strata-downstream-{}", std::process::id()));
    let report = strata_example_downstream::run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{:#?}", report?);
    Ok(())
}
