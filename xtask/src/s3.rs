//! A local S3-compatible server for the S3 tests: moto, from PyPI, on loopback only.
//!
//! `start` installs `moto[server]` with pip into a virtual environment under
//! `target/python` (never into the user's Python), starts it on a free 127.0.0.1 port,
//! waits for it (bounded), and creates the test bucket. If any step fails it says why; the
//! S3 tests, which `cargo xtask ci` requires, then fail with that reason. The server is
//! stopped when the returned guard drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned so CI runs the same server every time.
const MOTO: &str = "moto[server]==5.2.5";
/// Bucket the tests use.
pub(crate) const BUCKET: &str = "strata-test";

/// A running moto server; stopped on drop.
pub(crate) struct MotoServer {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server, or explains why it could not.
pub(crate) fn start(root: &Path) -> Result<MotoServer, String> {
    let python = crate::python::with_package(root, MOTO)?;
    let quiet = crate::python::quiet;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let log_path = root.join("target/moto-server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("cannot share the moto log: {e}"))?;
    let child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| format!("cannot start moto: {e}"))?;
    let server = MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    wait_for_port(port, Duration::from_secs(30))?;
    quiet(
        &python,
        &[
            "-c",
            &format!(
                "import boto3; boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{BUCKET}')",
                server.endpoint
            ),
        ],
    )?;
    Ok(server)
}

/// Waits until something accepts connections on `port` (the server's own start-up, not
/// the engine under test), up to `limit`.
fn wait_for_port(port: u16, limit: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        #[allow(clippy::disallowed_methods)] // polling an external server's start-up
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto did not listen on port {port} within {limit:?}"
    ))
}
