//! The S3 store retries transient failures: tests of the store `ObjectStoreConfig::build`
//! makes — the production operator, retry layer included — against the loopback S3 server
//! (`cargo xtask ci` starts moto, sets `STRATA_S3_ENDPOINT` / `STRATA_S3_BUCKET` and
//! requires them: without a server these tests fail there with the reason; under a plain
//! `cargo test` they skip, saying so).
//!
//! **How faults get in.** The store talks to a small HTTP proxy on loopback ([`Proxy`])
//! that forwards to the server and, for the requests a test names, either answers 503
//! itself (the request never reaches the server) or forwards the request and then loses
//! the answer: replaces it with a 503, resets the connection before any byte of it, or cuts
//! its body short. A proxy rather than a fault layer inserted under the retry layer at
//! construction, because only the wire exercises the whole production path: OpenDAL's S3
//! error parsing (which statuses and codes it marks temporary), the HTTP client's errors
//! on a reset or cut-off response, the retry layer as `build` configures it, and the
//! server's own answer to a retried conditional create (412). It stays small because it
//! sends `Connection: close` both ways: one request per connection, a response is
//! everything the server sends until it closes. Requests with a chunked body (OpenDAL
//! sends none) are refused and reported, so a change there fails loudly.
//!
//! Backoffs are the production ones ([`S3Config::RETRY_MIN_DELAY`] …): a test that runs
//! out the retry budget takes a few seconds.

// Test code: a failed unwrap is a failed test, and the skip reason is printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{create_manifest, s3_server};
use std::sync::Arc;

use futures::TryStreamExt;
use strata_request::{OpType, RegionId};
use strata_storage::{
    FileMeta, KeyCodec, ManifestConfig, ManifestManager, MergeOptions, ObjectStoreConfig,
    RegionEdit, RegionMetaAction, RegionMetaActionList, S3Config, Secret, SstReadOptions,
    SstWriteOptions, TimeSeriesMemtable, flush_memtable, read_sst, region_data_dir,
    region_manifest_dir, verify_sst,
};
use strata_workload::CpuWorkload;

use proxy::{Fault, Proxy};

/// A proxy in front of the server, and the production S3 store built to talk through it,
/// under a prefix of its own.
async fn store_behind_proxy(test: &str) -> Option<(Proxy, opendal::Operator)> {
    let (endpoint, bucket) = s3_server(test)?;
    let proxy = Proxy::start(&endpoint).await;
    let store = ObjectStoreConfig::S3(
        S3Config::new(bucket)
            .root(format!("retries-{}", strata_storage::FileId::random()))
            .endpoint(proxy.endpoint())
            .region("us-east-1")
            .credentials("test", Secret::new("test")),
    )
    .build()
    .unwrap();
    Some((proxy, store))
}

/// A small region SST (one PUT: below the write buffer) flushed to `store`, and the key
/// codec to read it with.
async fn flush_small_sst(
    store: &opendal::Operator,
    workload: &CpuWorkload,
    region: RegionId,
) -> (FileMeta, Arc<KeyCodec>) {
    let metadata = Arc::new(workload.region_metadata(region));
    let codec = Arc::new(KeyCodec::new(metadata).unwrap());
    let memtable = Arc::new(TimeSeriesMemtable::new(1, codec.clone(), None));
    let mut sequence = 1;
    for batch in workload.batches().unwrap() {
        memtable.write(&batch.batch, OpType::Put, sequence).unwrap();
        sequence += batch.batch.num_rows() as u64;
    }
    let file = flush_memtable(
        store,
        &memtable,
        &SstWriteOptions::default(),
        MergeOptions::flush(),
    )
    .await
    .unwrap()
    .unwrap();
    (file, codec)
}

fn edit(file: Option<&FileMeta>, entry_id: u64) -> RegionMetaActionList {
    RegionMetaActionList::one(RegionMetaAction::Edit({
        let mut cfg = RegionEdit::default();
        cfg.files_to_add = file.into_iter().cloned().collect();
        cfg.flushed_entry_id = Some(entry_id);
        cfg
    }))
}

#[tokio::test]
async fn an_sst_upload_survives_503s_and_lost_responses() {
    let Some((proxy, store)) = store_behind_proxy("the S3 SST retry test").await else {
        return;
    };
    let region = RegionId::new(91, 1);
    let data = region_data_dir(region);
    // Four failed attempts of the one PUT, within the budget of five retries: two 503s
    // before the server, then two that reached it and whose answers were lost.
    proxy.inject(
        "PUT",
        &data,
        [
            Fault::Unavailable,
            Fault::Unavailable,
            Fault::LostResponse,
            Fault::Reset,
        ],
    );
    let workload = CpuWorkload::new(20, 50);
    let (file, codec) = flush_small_sst(&store, &workload, region).await;
    let puts = proxy.seen("PUT", &data);
    assert_eq!(
        puts.len(),
        5,
        "four failed attempts, then the one that worked: {puts:?}"
    );
    assert_eq!(puts[4].fault, None, "{puts:?}");
    assert_eq!(puts[4].status, Some(200), "{puts:?}");
    assert_eq!(proxy.unused_faults(), 0);

    let path = file.path(&data);
    verify_sst(&store, &path, &file).await.unwrap();
    let rows: usize = read_sst(&store, &path, codec, SstReadOptions::default())
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 20 * 50);
    proxy.check();
}

/// A multipart upload (the path of SSTs above the write buffer): its initiation, a part
/// and its completion each fail before reaching the server, and the answers to a part and
/// to the completion are lost. (moto answers a repeated completion of a completed upload
/// with success; a server answering `NoSuchUpload` would fail the write — the SST writer
/// then deletes the object and the flush is retried.)
#[tokio::test]
async fn a_multipart_upload_survives_503s_and_lost_part_responses() {
    let Some((proxy, store)) = store_behind_proxy("the S3 multipart retry test").await else {
        return;
    };
    const PART: usize = 5 << 20;
    let bytes: Vec<u8> = (0..2 * PART + 1000).map(|i| (i % 251) as u8).collect();
    proxy.inject("POST", "big.bin?uploads", [Fault::Unavailable]);
    proxy.inject(
        "PUT",
        "big.bin?partNumber=1&",
        [Fault::LostResponse, Fault::Unavailable],
    );
    proxy.inject("PUT", "big.bin?partNumber=2&", [Fault::Reset]);
    proxy.inject(
        "POST",
        "big.bin?uploadId=",
        [Fault::Unavailable, Fault::LostResponse],
    );
    let mut writer = store.writer_with("big.bin").chunk(PART).await.unwrap();
    writer.write(bytes.clone()).await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(proxy.unused_faults(), 0, "{:?}", proxy.seen("", "big.bin"));
    assert_eq!(proxy.seen("PUT", "big.bin?partNumber=1&").len(), 3);
    assert_eq!(proxy.seen("POST", "big.bin?uploadId=").len(), 3);
    assert_eq!(store.read("big.bin").await.unwrap().to_vec(), bytes);
    proxy.check();
}

/// A conditional create (a manifest delta, a checkpoint) whose first attempt landed but
/// whose answer was lost is retried; the server answers the retry 412, and the manifest's
/// read-back rule takes the object as its own — the commit succeeds, not `Fenced` — and
/// the manifest holds the edit exactly once.
#[tokio::test]
async fn a_manifest_create_whose_answer_was_lost_is_taken_as_ours() {
    let Some((proxy, store)) = store_behind_proxy("the S3 conditional-create retry test").await
    else {
        return;
    };
    let region = RegionId::new(91, 2);
    let workload = CpuWorkload::new(4, 10);
    let (file, _) = flush_small_sst(&store, &workload, region).await;
    let config = ManifestConfig::new(2);
    let mut manifest = create_manifest(&store, workload.region_metadata(region), &config).await;

    let dir = region_manifest_dir(region);
    let delta1 = format!("{dir}/{:020}.json", 1);
    let delta2 = format!("{dir}/{:020}.json", 2);
    let checkpoint2 = format!("{dir}/{:020}.checkpoint", 2);
    proxy.inject("PUT", &delta1, [Fault::LostResponse]);
    proxy.inject("PUT", &delta2, [Fault::Reset]);
    proxy.inject("PUT", &checkpoint2, [Fault::LostResponse]);

    assert_eq!(manifest.update(edit(Some(&file), 7)).await.unwrap(), 1);
    assert_eq!(manifest.update(edit(None, 9)).await.unwrap(), 2);
    manifest.wait_for_cleanup().await;
    assert_eq!(proxy.unused_faults(), 0);
    for path in [&delta1, &delta2, &checkpoint2] {
        let puts = proxy.seen("PUT", path);
        let statuses: Vec<_> = puts.iter().map(|p| p.status).collect();
        // The first attempt landed (200, answer lost), the retry was refused (412).
        assert_eq!(statuses, [Some(200), Some(412)], "{path}: {puts:?}");
    }

    // The checkpoint counted as ours: the pointer names it.
    let pointer: serde_json::Value = serde_json::from_slice(
        &store
            .read(&format!("{dir}/_last_checkpoint"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(pointer["version"], 2, "{pointer}");

    let reopened = ManifestManager::open(store.clone(), region, config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest(), manifest.manifest());
    assert_eq!(reopened.manifest().manifest_version(), 2);
    assert_eq!(reopened.manifest().flushed_entry_id(), 9);
    assert_eq!(
        reopened.manifest().files().values().collect::<Vec<_>>(),
        [&file],
        "the edit is in the manifest exactly once"
    );
    let names: Vec<String> = store
        .list(&format!("{dir}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(&format!("{:020}", 3))),
        "no version past the two commits: {names:?}"
    );
    proxy.check();
}

/// Reads, stats and listings survive 503s, reset connections and bodies cut short.
#[tokio::test]
async fn reads_stats_and_lists_survive_transient_failures() {
    let Some((proxy, store)) = store_behind_proxy("the S3 read retry test").await else {
        return;
    };
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    store.write("dir/blob", bytes.clone()).await.unwrap();
    store.write("dir/other", vec![1u8; 10]).await.unwrap();

    proxy.inject(
        "GET",
        "dir/blob",
        [
            Fault::Unavailable,
            Fault::Reset,
            Fault::TruncatedBody,
            Fault::LostResponse,
        ],
    );
    assert_eq!(store.read("dir/blob").await.unwrap().to_vec(), bytes);
    assert_eq!(proxy.seen("GET", "dir/blob").len(), 5);

    proxy.inject("HEAD", "dir/blob", [Fault::Unavailable, Fault::Reset]);
    let meta = store.stat("dir/blob").await.unwrap();
    assert_eq!(meta.content_length(), bytes.len() as u64);

    proxy.inject(
        "GET",
        "list-type=2",
        [Fault::Unavailable, Fault::LostResponse],
    );
    let mut names: Vec<String> = store
        .list("dir/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["blob", "other"]);
    assert_eq!(proxy.unused_faults(), 0);

    // A manifest opens through them too (a listing, then a read per file).
    let region = RegionId::new(91, 3);
    let workload = CpuWorkload::new(2, 2);
    let config = ManifestConfig::new(0);
    let mut manifest = create_manifest(&store, workload.region_metadata(region), &config).await;
    manifest.update(edit(None, 3)).await.unwrap();
    let dir = region_manifest_dir(region);
    proxy.inject("GET", "list-type=2", [Fault::Reset]);
    proxy.inject(
        "GET",
        &format!("{dir}/{:020}.json", 0),
        [Fault::Unavailable],
    );
    proxy.inject(
        "GET",
        &format!("{dir}/{:020}.json", 1),
        [Fault::LostResponse],
    );
    let reopened = ManifestManager::open(store, region, config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest().flushed_entry_id(), 3);
    assert_eq!(proxy.unused_faults(), 0);
    proxy.check();
}

/// The budget is bounded: a request that keeps failing is tried `1 + MAX_RETRIES` times,
/// then the error reaches the caller as a storage error a caller may retry — and once the
/// store answers again, the next commit goes through.
#[tokio::test]
async fn retries_are_bounded_and_the_last_error_is_retryable() {
    let Some((proxy, store)) = store_behind_proxy("the S3 retry budget test").await else {
        return;
    };
    let region = RegionId::new(91, 4);
    let workload = CpuWorkload::new(2, 2);
    let config = ManifestConfig::new(0);
    let mut manifest = create_manifest(&store, workload.region_metadata(region), &config).await;
    let delta1 = format!("{}/{:020}.json", region_manifest_dir(region), 1);
    let attempts = 1 + S3Config::MAX_RETRIES;
    // One more fault than the budget: the budget, not the faults, ends the attempts.
    proxy.inject("PUT", &delta1, vec![Fault::Unavailable; attempts + 1]);
    let error = manifest.update(edit(None, 5)).await.unwrap_err();
    assert_eq!(proxy.seen("PUT", &delta1).len(), attempts, "{error}");
    assert_eq!(error.kind(), strata_base::ErrorKind::Storage, "{error}");
    assert!(error.kind().is_retryable(), "{error}");
    assert!(!error.is_fenced(), "{error}");
    // The object store's error, somewhere down the source chain (boxed or not).
    let source = std::iter::successors(std::error::Error::source(&error), |e| e.source())
        .find_map(|e| {
            e.downcast_ref::<opendal::Error>()
                .or_else(|| e.downcast_ref::<Box<opendal::Error>>().map(|b| &**b))
        })
        .expect("the object store's error is in the source chain");
    assert!(
        !source.is_temporary(),
        "the retry layer gave up on it (persistent): {source}"
    );

    // The store answers again (one fault left: one retry): the next commit takes version 1.
    assert_eq!(manifest.update(edit(None, 6)).await.unwrap(), 1);
    assert_eq!(proxy.unused_faults(), 0);
    let reopened = ManifestManager::open(store, region, config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest().manifest_version(), 1);
    assert_eq!(reopened.manifest().flushed_entry_id(), 6);
    proxy.check();
}

/// A fault-injecting HTTP/1.1 proxy for the tests above (see the module docs).
mod proxy {
    use std::sync::{Arc, Mutex, PoisonError};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What happens to a request a test named.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// The proxy answers 503 `ServiceUnavailable`; the server never sees the request.
        Unavailable,
        /// The server executes the request; the client gets a 503 instead of its answer.
        LostResponse,
        /// The server executes the request; the connection closes before any answer.
        Reset,
        /// The server executes the request; the answer's body is cut in half.
        TruncatedBody,
    }

    /// One request the proxy saw.
    #[derive(Debug, Clone)]
    #[allow(dead_code)] // read through `Debug` in assertion messages
    pub(crate) struct Seen {
        pub(crate) method: String,
        pub(crate) target: String,
        /// The fault injected into it, if any.
        pub(crate) fault: Option<Fault>,
        /// The server's status, when the request reached it.
        pub(crate) status: Option<u16>,
    }

    struct Rule {
        method: String,
        fragment: String,
        faults: std::collections::VecDeque<Fault>,
    }

    #[derive(Default)]
    struct State {
        rules: Mutex<Vec<Rule>>,
        seen: Mutex<Vec<Seen>>,
        errors: Mutex<Vec<String>>,
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The proxy; stops when dropped.
    pub(crate) struct Proxy {
        port: u16,
        state: Arc<State>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Proxy {
        /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
        pub(crate) async fn start(upstream: &str) -> Proxy {
            let upstream = upstream
                .strip_prefix("http://")
                .expect("an http:// endpoint")
                .trim_end_matches('/')
                .to_string();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let state = Arc::new(State::default());
            let shared = state.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = shared.clone();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve(&state, client, &upstream).await {
                            lock(&state.errors).push(error);
                        }
                    });
                }
            });
            Proxy { port, state, task }
        }

        /// The endpoint to give the store.
        pub(crate) fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// The next requests with `method` whose target (path and query) contains
        /// `fragment` meet `faults`, one each, in order.
        pub(crate) fn inject(
            &self,
            method: &str,
            fragment: &str,
            faults: impl IntoIterator<Item = Fault>,
        ) {
            lock(&self.state.rules).push(Rule {
                method: method.to_string(),
                fragment: fragment.to_string(),
                faults: faults.into_iter().collect(),
            });
        }

        /// The requests seen with `method` (any, if empty) whose target contains `fragment`.
        pub(crate) fn seen(&self, method: &str, fragment: &str) -> Vec<Seen> {
            lock(&self.state.seen)
                .iter()
                .filter(|s| {
                    (method.is_empty() || s.method == method) && s.target.contains(fragment)
                })
                .cloned()
                .collect()
        }

        /// Injected faults no request has met yet.
        pub(crate) fn unused_faults(&self) -> usize {
            lock(&self.state.rules).iter().map(|r| r.faults.len()).sum()
        }

        /// Panics if the proxy itself failed on a request.
        pub(crate) fn check(&self) {
            let errors = lock(&self.state.errors);
            assert!(errors.is_empty(), "the proxy failed: {errors:?}");
        }
    }

    /// The end of an HTTP head (`\r\n\r\n`), if `buf` holds one.
    fn head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    /// `head` with its `Connection` headers replaced by `Connection: close`.
    fn close_after(head: &str) -> String {
        let mut out = String::new();
        for line in head.trim_end_matches("\r\n").split("\r\n") {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if name != "connection" && name != "keep-alive" {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out
    }

    fn unavailable() -> Vec<u8> {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code><Message>injected by the test proxy</Message></Error>";
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    async fn serve(state: &State, mut client: TcpStream, upstream: &str) -> Result<(), String> {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            let mut chunk = [0u8; 8192];
            let n = client.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                // A connection closed without a request (the client's pool giving up).
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec()).map_err(|e| e.to_string())?;
        let mut request_line = head.split("\r\n").next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let target = request_line.next().unwrap_or("").to_string();
        let mut length = 0;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().map_err(|_| line.to_string())?,
                "transfer-encoding" => return Err(format!("{method} {target}: chunked request")),
                _ => {}
            }
        }
        let mut body = buf[end..].to_vec();
        while body.len() < length {
            let mut chunk = vec![0u8; 64 << 10];
            let n = client.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("{method} {target}: body cut short"));
            }
            body.extend_from_slice(&chunk[..n]);
        }

        let fault = {
            let mut rules = lock(&state.rules);
            rules
                .iter_mut()
                .find(|r| {
                    r.method == method && target.contains(&r.fragment) && !r.faults.is_empty()
                })
                .and_then(|r| r.faults.pop_front())
        };
        let mut seen = Seen {
            method: method.clone(),
            target: target.clone(),
            fault,
            status: None,
        };
        if fault == Some(Fault::Unavailable) {
            lock(&state.seen).push(seen);
            return client
                .write_all(&unavailable())
                .await
                .map_err(|e| e.to_string());
        }

        let mut server = TcpStream::connect(upstream)
            .await
            .map_err(|e| e.to_string())?;
        server
            .write_all(close_after(&head).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        server.write_all(&body).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        server
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let end =
            head_end(&response).ok_or_else(|| format!("{method} {target}: no response head"))?;
        let response_head = String::from_utf8_lossy(&response[..end]).to_string();
        seen.status = response_head.split(' ').nth(1).and_then(|s| s.parse().ok());
        lock(&state.seen).push(seen);
        let answer = match fault {
            None => [close_after(&response_head).as_bytes(), &response[end..]].concat(),
            Some(Fault::LostResponse) => unavailable(),
            Some(Fault::Reset) => return Ok(()),
            Some(Fault::TruncatedBody) => {
                let body = &response[end..];
                if body.len() < 2 {
                    return Err(format!("{method} {target}: no body to cut"));
                }
                [
                    close_after(&response_head).as_bytes(),
                    &body[..body.len() / 2],
                ]
                .concat()
            }
            Some(Fault::Unavailable) => unreachable!(),
        };
        client.write_all(&answer).await.map_err(|e| e.to_string())
    }
}
