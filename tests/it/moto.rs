//! A real `moto_server` (AWS emulator) on 127.0.0.1, started per test. It is installed by
//! `./scripts/test.sh`; if it cannot start, the test fails saying so. Tests reach it through a
//! (rule-less) fault proxy that counts the API calls as they arrive: a count is exact the
//! moment the caller has its answer, with no log to wait for.

use std::time::{Duration, Instant};

use crate::support::{free_port, test_tool};

pub struct Moto {
    /// The counting proxy in front of moto: what every test configures.
    pub endpoint: String,
    /// moto itself.
    pub direct: String,
    proxy: crate::faults::FaultProxy,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Moto {
    pub async fn start() -> Moto {
        Self::start_with(None).await
    }

    /// A moto that enforces IAM (SigV4 access keys and each policy's actions) once it has
    /// served `setup` API requests: the requests a test makes to set the scene.
    pub async fn enforcing_after(setup: usize) -> Moto {
        Self::start_with(Some(setup)).await
    }

    async fn start_with(enforce_after: Option<usize>) -> Moto {
        deepvue_rotator::support::tls::install_default_provider();
        let bin = test_tool("MOTO_SERVER", "moto_server");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("moto log: {e}"));
        let mut cmd = tokio::process::Command::new(&bin);
        match enforce_after {
            Some(n) => cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string()),
            None => cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT"),
        };
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install the test tools with ./scripts/test.sh \
                     (pip install \"moto[server]\" into .tools/venv) or set MOTO_SERVER",
                    bin.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{endpoint}/moto-api/")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server at {endpoint} did not answer within 30 s; run ./scripts/test.sh to (re)install it"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let proxy = crate::faults::FaultProxy::start(&endpoint, None).await;
        proxy.count_as(
            "api",
            std::sync::Arc::new(|r| r.method == axum::http::Method::POST),
        );
        Moto {
            endpoint: proxy.url.clone(),
            direct: endpoint,
            proxy,
            _dir: dir,
            _child: child,
        }
    }

    /// API requests made so far (counted at the proxy as they arrive; health checks are GETs).
    pub fn api_calls(&self) -> usize {
        self.proxy.count("api")
    }

    /// Call a query-protocol action (SNS, SQS) and return the XML answer.
    /// Moto routes on the credential scope's service name (`sns`, `sqs`).
    pub async fn query(&self, service: &str, params: &[(&str, &str)]) -> String {
        let resp = reqwest::Client::new()
            .post(&self.endpoint)
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .form(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto query {params:?}: {e}"));
        resp.text().await.unwrap_or_default()
    }

    /// Before enforcement starts: an IAM user whose inline policy allows `actions` on every
    /// resource (moto checks actions, not resources, for Secrets Manager), and its access key.
    /// Three API requests.
    pub async fn iam_user(&self, name: &str, actions: &[&str]) -> (String, String) {
        self.query(
            "iam",
            &[
                ("Action", "CreateUser"),
                ("Version", "2010-05-08"),
                ("UserName", name),
            ],
        )
        .await;
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        })
        .to_string();
        self.query(
            "iam",
            &[
                ("Action", "PutUserPolicy"),
                ("Version", "2010-05-08"),
                ("UserName", name),
                ("PolicyName", "replica"),
                ("PolicyDocument", &policy),
            ],
        )
        .await;
        let xml = self
            .query(
                "iam",
                &[
                    ("Action", "CreateAccessKey"),
                    ("Version", "2010-05-08"),
                    ("UserName", name),
                ],
            )
            .await;
        let field = |tag: &str| {
            xml.split(&format!("<{tag}>"))
                .nth(1)
                .and_then(|rest| rest.split(&format!("</{tag}>")).next())
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no {tag} in moto's CreateAccessKey answer: {xml}"))
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }
}
