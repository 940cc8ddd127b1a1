//! A throwaway single-node Garage S3 store.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mariadb::block_on;
use crate::process::{
    HarnessError, find_binary, free_port, port_open, random_token, stop_child, tail, wait_until,
};

const INSTALL_HINT: &str = "cargo install garage --locked --version 2.5.0";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const HEX: &[u8] = b"0123456789abcdef";

/// A running Garage server with one bucket and one key allowed on it;
/// stopped and deleted when dropped.
#[derive(Debug)]
pub struct Garage {
    child: Option<Child>,
    dir: tempfile::TempDir,
    s3_port: u16,
    rpc_port: u16,
    access_key_id: String,
    secret_access_key: String,
    bucket: String,
}

impl Garage {
    /// The region Garage answers for (its default).
    pub const REGION: &'static str = "garage";

    /// Starts Garage on free ports and waits until the bucket answers.
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("keeper-garage-")
            .tempdir()
            .map_err(HarnessError::io("creating the Garage temp dir"))?;
        let mut garage = Garage {
            child: None,
            dir,
            s3_port: 0,
            rpc_port: 0,
            // Garage's key format: "GK" and 24 hex digits, a 64-hex-digit secret.
            access_key_id: format!("GK{}", random_token(24, HEX)),
            secret_access_key: random_token(64, HEX),
            bucket: "keeper-test".to_owned(),
        };
        let mut last = None;
        for _ in 0..4 {
            match garage.launch() {
                Ok(()) => return Ok(garage),
                Err(e) => {
                    let bind_race = tail(&garage.log_path(), 40).contains("Address already in use");
                    if !bind_race {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::StartFailed {
            service: "Garage",
            reason: "no free port".into(),
            log_tail: String::new(),
        }))
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn region(&self) -> &str {
        Self::REGION
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The environment an S3 client (the agent, the AWS CLI) needs to reach
    /// this store: the standard AWS variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", Self::REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// An S3 client for this store, set up the way S3-compatible stores need:
    /// path-style addressing, checksums only when the operation requires them.
    pub fn client(&self) -> aws_sdk_s3::Client {
        client_for(
            &self.endpoint(),
            &self.access_key_id,
            &self.secret_access_key,
        )
    }

    /// Kills the server (SIGKILL), as a crash would; [`Garage::restart`]
    /// brings it back on the same ports and data.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
    }

    /// Starts a stopped or killed server again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.spawn_and_wait()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        self.s3_port = free_port()?;
        self.rpc_port = free_port()?;
        let dir = self.dir.path();
        let config = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
            rpc = self.rpc_port,
            s3 = self.s3_port,
            secret = random_token(64, HEX),
            region = Self::REGION,
        );
        std::fs::write(self.config_path(), config)
            .map_err(HarnessError::io("writing garage.toml"))?;
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let garage = find_binary("garage", INSTALL_HINT)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(HarnessError::io("creating garage.log"))?;
        let log_err = log
            .try_clone()
            .map_err(HarnessError::io("opening garage.log"))?;
        let mut child = Command::new(garage)
            .arg("-c")
            .arg(self.config_path())
            .arg("server")
            .arg("--single-node")
            .arg("--default-bucket")
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_access_key)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(HarnessError::io("starting garage"))?;
        let port = self.s3_port;
        if let Err(reason) = wait_until(&mut child, START_TIMEOUT, || port_open(port)) {
            stop_child(&mut child, Duration::from_secs(5));
            return Err(self.start_failed(reason));
        }
        self.child = Some(child);
        // The port opens before the layout and the default bucket exist.
        self.wait_for_bucket()
    }

    fn wait_for_bucket(&mut self) -> Result<(), HarnessError> {
        let client = self.client();
        let bucket = self.bucket.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        let outcome = block_on("Garage", async move {
            loop {
                match client.head_bucket().bucket(&bucket).send().await {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!(
                            "bucket {bucket} not ready: {}",
                            aws_sdk_s3::error::DisplayErrorContext(e)
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })?;
        outcome.map_err(|reason| {
            self.kill();
            self.start_failed(reason)
        })
    }

    fn start_failed(&self, reason: String) -> HarnessError {
        HarnessError::StartFailed {
            service: "Garage",
            reason,
            log_tail: tail(&self.log_path(), 20),
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An S3 client for an S3-compatible endpoint with static keys.
pub fn client_for(endpoint: &str, key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(Garage::REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            key_id,
            secret,
            None,
            None,
            "keeper-harness",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
