//! The AWS SDK configuration the adapters are built from, and the S3 client settings an emulator needs.

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration from the environment: region, credentials and endpoint through the usual
/// chain. aws-config itself honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`, and
/// `endpoint_url` in the shared config file), so pointing the binaries at an emulator needs no code.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client for `config`, addressing buckets path-style (`{endpoint}/{bucket}/{key}`): AWS
/// serves both styles, while emulators on `127.0.0.1` cannot serve virtual-hosted bucket names.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(s3)
}
