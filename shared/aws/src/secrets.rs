//! Migration credentials from AWS Secrets Manager: one secret per migration, a JSON object whose keys are
//! the connectors' `token_env` names.

use std::collections::HashMap;

use async_trait::async_trait;
use deltadesk_serverless::context::{SecretError, SecretSource};

pub struct SecretsManagerSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSecrets {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerSecrets { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSecrets {
    async fn load(&self, name: &str) -> Result<HashMap<String, String>, SecretError> {
        let out = match self.client.get_secret_value().secret_id(name).send().await {
            Ok(o) => o,
            Err(e) => {
                // A migration without credentials (a simulator, say) simply has no secret.
                if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
                    return Ok(HashMap::new());
                }
                let e = crate::errors::AwsError::new("secretsmanager", "GetSecretValue", name, e);
                return Err(SecretError::Unavailable { name: name.to_string(), source: Box::new(e) });
            }
        };
        let text = out.secret_string().unwrap_or_default();
        // Values never reach logs or errors: only the secret's name does.
        serde_json::from_str::<HashMap<String, String>>(text).map_err(|_| SecretError::Malformed { name: name.to_string() })
    }
}
