//! S3 client setup from the agent's environment (never the process
//! environment, so tests can run the agent in-process with their own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};

use super::error::S3Error;
use crate::cli::S3Args;
use crate::context::AgentContext;
use crate::message::one_line;

/// The region used when `AWS_REGION` is unset (what the AWS CLI assumes too).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Attempts per request, first one included; throttling and 5xx are retried
/// with exponential backoff and jitter.
const MAX_ATTEMPTS: u32 = 5;
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte for this long on an open connection means the peer is gone.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The variables the agent reads; anything else in the environment is ignored.
const VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_PROFILE",
];

/// S3 settings from the agent's environment and flags.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Environment variables (the standard AWS ones) as the agent received them.
    pub env: HashMap<String, String>,
    pub force_path_style: bool,
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds the secret key: show only which variables are set.
        let mut names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("S3Settings")
            .field("env", &names)
            .field("force_path_style", &self.force_path_style)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

impl S3Settings {
    /// The settings a command uses: the AWS variables from `ctx.env` and the
    /// `--s3-*` flags.
    pub fn from_ctx(ctx: &AgentContext, args: &S3Args) -> Self {
        let env = VARIABLES
            .iter()
            .filter_map(|name| ctx.var(name).map(|v| ((*name).to_owned(), v.to_owned())))
            .collect();
        S3Settings {
            env,
            force_path_style: args.s3_force_path_style,
            ca_bundle: args.s3_ca_bundle.clone(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn region(&self) -> String {
        self.var("AWS_REGION")
            .or_else(|| self.var("AWS_DEFAULT_REGION"))
            .unwrap_or(DEFAULT_REGION)
            .to_owned()
    }

    /// The custom endpoint, if any (`AWS_ENDPOINT_URL_S3` wins, as in the AWS SDKs).
    pub fn endpoint_url(&self) -> Option<&str> {
        self.var("AWS_ENDPOINT_URL_S3")
            .or_else(|| self.var("AWS_ENDPOINT_URL"))
    }

    /// How the endpoint is named in messages: the URL without any user info,
    /// or AWS's own endpoint for the region.
    pub fn endpoint_label(&self) -> String {
        match self.endpoint_url() {
            Some(raw) => match url::Url::parse(raw) {
                Ok(mut parsed) => {
                    let _ = parsed.set_username("");
                    let _ = parsed.set_password(None);
                    parsed.as_str().trim_end_matches('/').to_owned()
                }
                Err(_) => "the endpoint in AWS_ENDPOINT_URL (not a valid URL)".to_owned(),
            },
            None => format!("AWS S3 ({})", self.region()),
        }
    }

    /// Secrets that must never reach a message, even inside a server's error text.
    pub(crate) fn secrets(&self) -> Vec<String> {
        ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
            .iter()
            .filter_map(|name| self.var(name))
            .filter(|v| v.len() >= 4)
            .map(str::to_owned)
            .collect()
    }

    /// Builds the client explicitly: no process-environment or `~/.aws` lookup.
    pub(crate) async fn client(&self, bucket: &str) -> Result<aws_sdk_s3::Client, S3Error> {
        let config_error = |detail: String| S3Error::Config {
            bucket: bucket.to_owned(),
            endpoint: self.endpoint_label(),
            detail,
        };
        if let Some(raw) = self.endpoint_url() {
            let parsed = url::Url::parse(raw).map_err(|_| {
                config_error(
                    "AWS_ENDPOINT_URL is not a URL: use e.g. https://s3.example.com:9000".into(),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(config_error(
                    "AWS_ENDPOINT_URL must start with http:// or https://".into(),
                ));
            }
        }
        let http_client = self.http_client(&config_error)?;
        let region = Region::new(self.region());
        let credentials = self
            .credentials(region.clone(), http_client.clone(), &config_error)
            .await?;
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .http_client(http_client)
            .force_path_style(self.force_path_style)
            // S3-compatible stores (Garage among them) reject the SDK's default
            // streaming checksum trailers; MD5/CRC are sent only when required.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = self.endpoint_url() {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(aws_sdk_s3::Client::from_conf(builder.build()))
    }

    fn http_client(
        &self,
        config_error: &dyn Fn(String) -> S3Error,
    ) -> Result<aws_sdk_s3::config::SharedHttpClient, S3Error> {
        use aws_smithy_http_client::tls::{
            self, TlsContext, TrustStore, rustls_provider::CryptoMode,
        };
        let mut trust = TrustStore::default();
        if let Some(path) = &self.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                config_error(format!(
                    "cannot read the CA bundle {} ({e}): mount the file or fix --s3-ca-bundle",
                    path.display()
                ))
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(config_error(format!(
                    "the CA bundle {} holds no PEM certificate: give a PEM file with -----BEGIN CERTIFICATE----- blocks",
                    path.display()
                )));
            }
            trust = trust.with_pem_certificate(pem);
        }
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| config_error(format!("cannot set up TLS: {e}")))?;
        Ok(aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https())
    }

    // The profile-file types are re-exported from aws-runtime under deprecated
    // aliases; using them avoids a direct dependency on aws-runtime.
    #[allow(deprecated)]
    async fn credentials(
        &self,
        region: Region,
        http_client: aws_sdk_s3::config::SharedHttpClient,
        config_error: &dyn Fn(String) -> S3Error,
    ) -> Result<SharedCredentialsProvider, S3Error> {
        if let (Some(id), Some(secret)) = (
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(SharedCredentialsProvider::new(Credentials::new(
                id,
                secret,
                self.var("AWS_SESSION_TOKEN").map(str::to_owned),
                None,
                "keeper-agent-environment",
            )));
        }
        if self.var("AWS_ACCESS_KEY_ID").is_some() || self.var("AWS_SECRET_ACCESS_KEY").is_some() {
            return Err(config_error(
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set: set both".into(),
            ));
        }
        let Some(path) = self.var("AWS_SHARED_CREDENTIALS_FILE") else {
            return Err(config_error(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE (and AWS_PROFILE)".into(),
            ));
        };
        // Read it here so a missing mount is reported as such, not as a
        // credentials failure on the first request.
        let contents = tokio::fs::read_to_string(path).await.map_err(|e| {
            config_error(format!(
                "cannot read AWS_SHARED_CREDENTIALS_FILE {path} ({e}): mount the credentials file"
            ))
        })?;
        use aws_config::profile::ProfileFileCredentialsProvider;
        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
        use aws_config::provider_config::ProviderConfig;
        use aws_sdk_s3::config::ProvideCredentials;
        let profile = self.var("AWS_PROFILE").unwrap_or("default").to_owned();
        let provider = ProfileFileCredentialsProvider::builder()
            .profile_files(
                ProfileFiles::builder()
                    .with_contents(ProfileFileKind::Credentials, contents)
                    .build(),
            )
            .profile_name(&profile)
            .configure(
                &ProviderConfig::empty()
                    .with_region(Some(region))
                    .with_http_client(http_client),
            )
            .build();
        // Resolve once now: a missing profile or key is a configuration error
        // with a clear message, not an opaque signing failure later.
        provider.provide_credentials().await.map_err(|e| {
            config_error(format!(
                "no usable credentials for profile `{profile}` in {path}: {}",
                one_line(&aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
            ))
        })?;
        Ok(SharedCredentialsProvider::new(provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> S3Settings {
        let ctx = AgentContext {
            env: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .chain([("MYSQL_PWD".to_owned(), "not-for-s3".to_owned())])
                .collect(),
            kube: None,
        };
        S3Settings::from_ctx(&ctx, &S3Args::default())
    }

    #[test]
    fn region_defaults_to_us_east_1() {
        assert_eq!(settings(&[]).region(), "us-east-1");
        assert_eq!(
            settings(&[("AWS_REGION", "eu-west-3")]).region(),
            "eu-west-3"
        );
        assert_eq!(settings(&[("AWS_REGION", "")]).region(), "us-east-1");
    }

    #[test]
    fn only_aws_variables_are_kept_and_debug_hides_values() {
        let s = settings(&[
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
        ]);
        assert!(!s.env.contains_key("MYSQL_PWD"));
        let shown = format!("{s:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"));
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn endpoint_label_drops_user_info() {
        let s = settings(&[("AWS_ENDPOINT_URL", "https://user:pw@s3.example.com:9000/")]);
        assert_eq!(s.endpoint_label(), "https://s3.example.com:9000");
        assert_eq!(settings(&[]).endpoint_label(), "AWS S3 (us-east-1)");
    }

    #[tokio::test]
    async fn missing_credentials_are_a_clear_error() {
        let err = settings(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")])
            .client("b")
            .await
            .expect_err("no credentials");
        let text = err.to_string();
        assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        assert!(text.contains("bucket b"), "{text}");
    }

    #[tokio::test]
    async fn credentials_file_profile_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[backup]\naws_access_key_id = C\naws_secret_access_key = D\n",
        )
        .expect("write");
        let path = path.display().to_string();
        let s = settings(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "backup"),
        ]);
        assert!(s.client("b").await.is_ok());
        let err = settings(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "nope"),
        ])
        .client("b")
        .await
        .expect_err("unknown profile");
        assert!(err.to_string().contains("`nope`"), "{err}");
        let err = settings(&[("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds")])
            .client("b")
            .await
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/creds"), "{err}");
    }

    #[tokio::test]
    async fn bad_ca_bundle_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let mut s = settings(&[
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "Bsecret"),
        ]);
        s.ca_bundle = Some(path);
        let err = s.client("b").await.expect_err("bad bundle");
        assert!(err.to_string().contains("CA bundle"), "{err}");
    }
}
