//! `AwsSecrets` against moto's Secrets Manager.

use integration_tests::moto::{Moto, unique};
use shared::model::SecretRef;
use shared::secrets::{AwsSecrets, SecretLoader};

#[tokio::test]
async fn a_secret_is_read_by_arn_and_a_missing_one_names_the_fix() {
    let moto = Moto::connect().await;
    let name = unique("o365-contoso");
    let created = moto
        .secrets
        .create_secret()
        .name(&name)
        .secret_string("client~secret.value\n")
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_owned();
    let loader = AwsSecrets::new(moto.secrets.clone());

    let value = loader
        .load(&SecretRef::SecretsManager(arn.clone()))
        .await
        .unwrap();
    assert_eq!(value.expose(), "client~secret.value");
    assert_eq!(format!("{value:?}"), "<redacted>");

    let missing = arn.replace(&name, &unique("gone"));
    let err = loader
        .load(&SecretRef::SecretsManager(missing.clone()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&missing) && text.contains("no such secret"),
        "{text}"
    );
    assert!(!text.contains("client~secret"), "never the value: {text}");
}
