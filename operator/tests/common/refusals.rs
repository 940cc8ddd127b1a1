//! A client that answers chosen requests itself, in front of any other
//! client: as the API server does when it refuses them (403 Forbidden), or
//! with an object the in-memory API cannot serve (it has no cluster-scoped
//! paths such as `/api/v1/namespaces/<name>`, and its interceptors no 403).
//! Included with `#[path]` by the test binaries that need it.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::json;

/// Decides, from the method and the URL path, whether to answer a request
/// here: `Some((code, body))` is the answer.
type Rule = dyn Fn(&Method, &str) -> Option<(u16, serde_json::Value)> + Send + Sync;

#[derive(Clone)]
struct Refusing {
    inner: Client,
    rule: Arc<Rule>,
}

impl tower_service::Service<Request<Body>> for Refusing {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Some((code, body)) = (self.rule)(request.method(), request.uri().path()) {
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            return Box::pin(async move { Ok(response) });
        }
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
    }
}

/// `client`, with every request `rule` picks answered by it.
pub fn answering<F>(client: Client, rule: F) -> Client
where
    F: Fn(&Method, &str) -> Option<(u16, serde_json::Value)> + Send + Sync + 'static,
{
    Client::new(
        Refusing {
            inner: client,
            rule: Arc::new(rule),
        },
        "default",
    )
}

/// `client`, with every `method` request whose path ends with `path_end`
/// refused 403 as RBAC or admission would (e.g. `POST .../jobs`).
pub fn forbidding(client: Client, method: Method, path_end: &'static str) -> Client {
    answering(client, move |m, path| {
        (*m == method && path.ends_with(path_end)).then(|| {
            let message = format!(
                "{path_end} is forbidden: User \"system:serviceaccount:keeper-system:keeper-operator\" cannot {method} it"
            );
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Forbidden", "code": 403,
            });
            (403, status)
        })
    })
}
